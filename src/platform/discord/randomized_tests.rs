//! Randomized input tests of what turns Discord's payloads into engram's values: gateway
//! dispatches (`MESSAGE_CREATE`, `INTERACTION_CREATE`, channels and threads) parsed into
//! serenity's models as the gateway client parses them, then the handler's own steps — the
//! guild's tenant, channel keys, threads, the question without the bot's mention — and the
//! doctor's reading of guild and member objects into permissions.

use serde_json::{json, Value};
use serenity::all::{
    ChannelType, CommandDataOptionValue, GuildChannel, Interaction, Message, Permissions, UserId,
};

use super::diagnose::{guild_permissions, missing, NEEDED};
use super::events::{strip_mention, tenant};
use super::*;
use crate::brain::{BindingMode, BrainName};
use crate::randomized::{check, mutate_json, mutate_text, Rng};

const BOT: u64 = 1_210_000_000_000_000_001;

fn user(id: u64, bot: bool) -> Value {
    json!({
        "id": id.to_string(), "username": format!("user{id}"), "discriminator": "0",
        "global_name": null, "avatar": null, "bot": bot, "public_flags": 0, "flags": 0,
        "banner": null, "accent_color": null, "avatar_decoration_data": null,
    })
}

fn member() -> Value {
    json!({
        "roles": ["1210000000000000100"], "nick": null, "avatar": null, "banner": null,
        "joined_at": "2024-01-01T00:00:00.000000+00:00", "premium_since": null, "deaf": false,
        "mute": false, "flags": 0, "pending": false, "communication_disabled_until": null,
    })
}

fn message(content: &str) -> Value {
    let mut mention = user(BOT, true);
    mention["member"] = member();
    json!({
        "id": "1210000000000000500", "channel_id": "1210000000000000200",
        "guild_id": "1210000000000000010", "author": user(1_210_000_000_000_000_300, false),
        "member": member(), "content": content,
        "timestamp": "2024-03-01T12:00:00.000000+00:00", "edited_timestamp": null,
        "tts": false, "mention_everyone": false, "mentions": [mention], "mention_roles": [],
        "attachments": [{
            "id": "1210000000000000600", "filename": "handbook.pdf", "size": 12_345,
            "url": "https://cdn.discordapp.com/attachments/1/2/handbook.pdf",
            "proxy_url": "https://media.discordapp.net/attachments/1/2/handbook.pdf",
            "content_type": "application/pdf",
        }],
        "embeds": [], "components": [], "pinned": false, "type": 0, "flags": 0,
        "nonce": "1210000000000000500",
    })
}

fn channel(kind: u8) -> Value {
    let mut channel = json!({
        "id": "1210000000000000201", "guild_id": "1210000000000000010", "name": "questions",
        "last_message_id": null, "rate_limit_per_user": 0, "flags": 0, "nsfw": false,
        "type": kind, "position": 0, "permission_overwrites": [], "topic": null,
        "parent_id": null,
    });
    if kind == 11 {
        channel["parent_id"] = json!("1210000000000000200");
        channel["owner_id"] = json!(BOT.to_string());
        channel["message_count"] = json!(0);
        channel["member_count"] = json!(1);
        channel["total_message_sent"] = json!(0);
        channel["thread_metadata"] = json!({
            "archived": false, "auto_archive_duration": 1440,
            "archive_timestamp": "2024-01-01T00:00:00.000000+00:00", "locked": false,
        });
    }
    channel
}

fn interaction(name: &str, options: Value) -> Value {
    let mut member = member();
    member["user"] = user(1_210_000_000_000_000_300, false);
    member["permissions"] = json!("2147483647");
    let mut channel = channel(0);
    channel["permissions"] = json!("2147483647");
    json!({
        "id": "1210000000000000700", "application_id": "1210000000000000002", "type": 2,
        "data": {
            "id": "1210000000000000800", "name": name, "type": 1, "options": options,
            "guild_id": "1210000000000000010",
        },
        "guild_id": "1210000000000000010",
        "guild": {"id": "1210000000000000010", "locale": "en-US", "features": []},
        "channel_id": "1210000000000000200", "channel": channel, "member": member,
        "token": "aW50ZXJhY3Rpb246:fake", "version": 1, "app_permissions": "2147483647",
        "locale": "en-US", "guild_locale": "en-US", "entitlements": [],
        "authorizing_integration_owners": {"0": "1210000000000000010"}, "context": 0,
        "attachment_size_limit": 10_485_760,
    })
}

/// Real-shaped dispatches, each with the serenity model it parses into.
fn seeds() -> Vec<(&'static str, Value)> {
    vec![
        (
            "message",
            message(&format!("<@{BOT}> where do visitors park?")),
        ),
        ("message", message(&format!("hey <@!{BOT}>  and @everyone"))),
        ("channel", channel(0)),
        ("channel", channel(11)),
        (
            "interaction",
            interaction(
                "ask",
                json!([{"name": "question", "type": 3, "value": "where?"}]),
            ),
        ),
        (
            "interaction",
            interaction(
                "brain",
                json!([{"name": "link", "type": 1, "options": [
                    {"name": "name", "type": 3, "value": "handbook"},
                    {"name": "mode", "type": 3, "value": "knowledge"},
                ]}]),
            ),
        ),
    ]
}

fn check_question(content: &str) {
    let question = strip_mention(content, UserId::new(BOT));
    assert_eq!(question, question.trim());
    assert!(question.len() <= content.len());
    if !content.contains("<@") {
        assert_eq!(question, content.trim(), "only a mention is ever taken out");
    }
}

/// The handler's steps on a parsed message (`Handler::message`, short of the gateway core).
fn check_message(message: &Message) {
    check_question(&message.content);
    if let Some(guild) = message.guild_id {
        assert_eq!(
            tenant(guild.get()).as_str(),
            format!("discord:{}", guild.get())
        );
    }
    assert!(channel_key(message.channel_id.get())
        .0
        .starts_with("discord:"));
    for attachment in &message.attachments {
        let _ = (attachment.filename.len(), u64::from(attachment.size));
    }
    let _ = message
        .referenced_message
        .as_ref()
        .map(|replied| replied.author.id.get() == BOT);
}

#[test]
fn the_seeds_parse() {
    for (kind, seed) in seeds() {
        let text = seed.to_string();
        let parsed = match kind {
            "message" => serde_json::from_str::<Message>(&text).map(drop),
            "channel" => serde_json::from_str::<GuildChannel>(&text).map(drop),
            _ => serde_json::from_str::<Interaction>(&text).map(drop),
        };
        assert!(parsed.is_ok(), "{kind}: {parsed:?}");
    }
}

#[test]
fn gateway_dispatches_parse_or_are_refused_cleanly() {
    let seeds = seeds();
    check("discord dispatches", 2500, move |rng| {
        let (kind, seed) = rng.pick(&seeds);
        let text = if rng.percent(75) {
            mutate_json(rng, seed).to_string()
        } else {
            let text = seed.to_string();
            mutate_text(
                rng,
                &text,
                &text,
                &["\"", "{", "}", "[", "null", "\\u0000", ","],
            )
        };
        match *kind {
            "message" => {
                if let Ok(message) = serde_json::from_str::<Message>(&text) {
                    check_message(&message);
                }
            }
            "channel" => {
                if let Ok(channel) = serde_json::from_str::<GuildChannel>(&text) {
                    let thread = threads::is_thread(channel.kind);
                    assert_eq!(
                        thread,
                        matches!(
                            channel.kind,
                            ChannelType::PublicThread
                                | ChannelType::PrivateThread
                                | ChannelType::NewsThread
                        )
                    );
                }
            }
            _ => {
                if let Ok(Interaction::Command(command)) =
                    serde_json::from_str::<Interaction>(&text)
                {
                    // What `Handler::command` reads: names and string options.
                    for option in &command.data.options {
                        if let CommandDataOptionValue::String(value) = &option.value {
                            let _ = BrainName::parse(value);
                            let _ = BindingMode::parse(value);
                        }
                    }
                    if let Some(guild) = command.guild_id {
                        let _ = tenant(guild.get());
                    }
                }
            }
        }
    });
}

#[test]
fn any_message_text_loses_only_the_mention() {
    check("discord strip mention", 3000, |rng: &mut Rng| {
        let mut content = String::new();
        for _ in 0..rng.length(20) {
            match rng.below(4) {
                0 => content.push_str(&format!("<@{BOT}>")),
                1 => content.push_str(rng.choose(&["<@!", "<@", ">", "<@7>", "@everyone"])),
                _ => {
                    let len = rng.length(30);
                    content.push_str(&rng.string(len));
                }
            }
        }
        check_question(&content);
    });
}

fn guild_and_member(rng: &mut Rng) -> (Value, Value) {
    let role = |id: &str, bits: u64| json!({"id": id, "permissions": bits.to_string()});
    let bits = |rng: &mut Rng| match rng.below(4) {
        0 => 0,
        1 => u64::MAX,
        2 => Permissions::ADMINISTRATOR.bits(),
        _ => rng.next_u64() & Permissions::all().bits(),
    };
    let mut roles: Vec<Value> = (0..rng.range(0, 5))
        .map(|i| role(&format!("{}", 10 + i), bits(rng)))
        .collect();
    roles.push(role("1", bits(rng)));
    let guild = json!({"id": "1", "owner_id": rng.pick(&["9", "7"]), "roles": roles});
    let mine: Vec<String> = (0..rng.range(0, 3))
        .map(|_| format!("{}", 10 + rng.below(6)))
        .collect();
    let member = json!({"roles": mine});
    (mutate_json(rng, &guild), {
        if rng.percent(50) {
            mutate_json(rng, &member)
        } else {
            member
        }
    })
}

#[test]
fn permissions_from_any_guild_and_member_objects() {
    check("discord permissions", 3000, |rng| {
        let (guild, member) = guild_and_member(rng);
        let granted = guild_permissions(&guild, &member, "7");
        if guild["owner_id"].as_str() == Some("7") {
            assert_eq!(granted, Permissions::all());
        }
        // Nothing is granted that no role of the guild holds, unless it is everything.
        let held = guild["roles"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|role| role["permissions"].as_str()?.parse::<u64>().ok())
            .fold(Permissions::empty(), |all, bits| {
                all | Permissions::from_bits_truncate(bits)
            });
        assert!(granted == Permissions::all() || held.contains(granted));
        let lacking = missing(granted);
        assert!(lacking.len() <= NEEDED.len());
        assert!(lacking.iter().all(|n| !granted.contains(n.permission)));
        assert_eq!(granted, guild_permissions(&guild, &member, "7"));
    });
}
