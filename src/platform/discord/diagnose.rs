//! What `engram doctor` asks Discord: does the token work, may the application read message
//! text (the privileged Message Content intent), and, in every server the bot is in, does its
//! role have the permissions engram's features use — computed as Discord does at server level
//! (the `@everyone` role, plus the bot's roles; the owner and administrators have everything).

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use serenity::all::Permissions;

use super::rest::DiscordRest;
use crate::chat::PlatformError;

/// A permission engram uses, and what for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needed {
    pub permission: Permissions,
    /// As Discord's settings name it.
    pub name: &'static str,
    pub used_for: &'static str,
    /// Without it engram does not work in the server at all (rather than losing a feature).
    pub essential: bool,
}

/// Every permission engram's features use in a server: what it reads and writes. (It attaches
/// no files and sends no embeds — source links are wrapped in `<…>` — and creates no threads.)
pub const NEEDED: [Needed; 5] = [
    Needed {
        permission: Permissions::VIEW_CHANNEL,
        name: "View Channels",
        used_for: "to see questions and files",
        essential: true,
    },
    Needed {
        permission: Permissions::SEND_MESSAGES,
        name: "Send Messages",
        used_for: "to answer",
        essential: true,
    },
    Needed {
        permission: Permissions::READ_MESSAGE_HISTORY,
        name: "Read Message History",
        used_for: "to reply to questions and files",
        essential: true,
    },
    Needed {
        permission: Permissions::SEND_MESSAGES_IN_THREADS,
        name: "Send Messages in Threads",
        used_for: "to answer in threads opened on answers",
        essential: false,
    },
    Needed {
        permission: Permissions::ADD_REACTIONS,
        name: "Add Reactions",
        used_for: "for ⏳ / ✅ / ❌ on files",
        essential: false,
    },
];

/// The permissions integer of an invite link granting everything in `NEEDED`.
pub fn needed_bits() -> u64 {
    NEEDED
        .iter()
        .fold(Permissions::empty(), |all, needed| all | needed.permission)
        .bits()
}

/// At most this many servers are checked one by one (two requests each).
pub const MAX_GUILDS_CHECKED: usize = 50;

/// What `engram doctor` learns from Discord.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    pub bot_name: String,
    pub application_id: String,
    /// The application may receive message text (the privileged Message Content intent).
    pub message_content: bool,
    /// The servers the bot is in, by name, with what each lacks.
    pub guilds: Vec<GuildDiagnosis>,
    /// Servers beyond `MAX_GUILDS_CHECKED`, not checked.
    pub unchecked_guilds: usize,
}

/// The bot in one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuildDiagnosis {
    pub id: String,
    pub name: String,
    /// What engram uses and the bot's roles do not grant there.
    pub missing: Vec<Needed>,
}

/// Application flags that allow the Message Content intent (verified apps get the first).
const GATEWAY_MESSAGE_CONTENT: u64 = 1 << 18;
const GATEWAY_MESSAGE_CONTENT_LIMITED: u64 = 1 << 19;

/// Discord's page size for `GET /users/@me/guilds`, and how many servers are counted at most.
const GUILD_PAGE: usize = 200;
const MAX_GUILDS_LISTED: usize = 10_000;

impl DiscordRest {
    /// Checks the token (who is the bot?), the application's intents, and the bot's
    /// permissions in each server it is in.
    pub async fn diagnose(&self) -> Result<Diagnosis, PlatformError> {
        let me = self.get("/users/@me").await?;
        let application = self.get("/oauth2/applications/@me").await?;
        let flags = application["flags"].as_u64().unwrap_or(0);
        let bot_id = me["id"].as_str().unwrap_or_default().to_string();
        let mut listed = Vec::new();
        loop {
            let mut path = format!("/users/@me/guilds?limit={GUILD_PAGE}");
            if let Some(last) = listed.last().and_then(|g: &Value| g["id"].as_str()) {
                path.push_str(&format!("&after={last}"));
            }
            let page = self.get(&path).await?;
            let page = page.as_array().cloned().unwrap_or_default();
            let full = page.len() >= GUILD_PAGE;
            listed.extend(page);
            if !full || listed.len() >= MAX_GUILDS_LISTED {
                break;
            }
        }
        let mut guilds = Vec::new();
        for guild in listed.iter().take(MAX_GUILDS_CHECKED) {
            let id = guild["id"].as_str().unwrap_or_default().to_string();
            let full = self.get(&format!("/guilds/{id}")).await?;
            let member = self.get(&format!("/guilds/{id}/members/{bot_id}")).await?;
            guilds.push(GuildDiagnosis {
                name: guild["name"].as_str().unwrap_or("?").to_string(),
                missing: missing(guild_permissions(&full, &member, &bot_id)),
                id,
            });
        }
        Ok(Diagnosis {
            bot_name: me["username"].as_str().unwrap_or("?").to_string(),
            application_id: application["id"].as_str().unwrap_or_default().to_string(),
            message_content: flags & (GATEWAY_MESSAGE_CONTENT | GATEWAY_MESSAGE_CONTENT_LIMITED)
                != 0,
            unchecked_guilds: listed.len().saturating_sub(guilds.len()),
            guilds,
        })
    }

    /// A GET, waiting out short rate limits (the doctor makes a few requests per server).
    async fn get(&self, path: &str) -> Result<Value, PlatformError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.call(Method::GET, path, None, None).await {
                Ok(value) => return Ok(value.unwrap_or(Value::Null)),
                Err(PlatformError::RateLimited { retry_after })
                    if attempt < 4 && retry_after <= Duration::from_secs(10) =>
                {
                    tokio::time::sleep(retry_after).await;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

/// The bot's server-level permissions from `GET /guilds/{id}` (roles, owner) and its member
/// object: everything for the owner or an administrator, else `@everyone`'s and its roles'.
pub fn guild_permissions(guild: &Value, member: &Value, bot_id: &str) -> Permissions {
    if guild["owner_id"].as_str() == Some(bot_id) {
        return Permissions::all();
    }
    let guild_id = guild["id"].as_str().unwrap_or_default();
    let mine: Vec<&str> = member["roles"]
        .as_array()
        .map(|roles| roles.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let granted = guild["roles"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|role| {
            role["id"]
                .as_str()
                .is_some_and(|id| id == guild_id || mine.contains(&id))
        })
        .filter_map(|role| role["permissions"].as_str()?.parse::<u64>().ok())
        .fold(Permissions::empty(), |all, bits| {
            all | Permissions::from_bits_truncate(bits)
        });
    if granted.contains(Permissions::ADMINISTRATOR) {
        Permissions::all()
    } else {
        granted
    }
}

/// What engram uses that `granted` lacks.
pub fn missing(granted: Permissions) -> Vec<Needed> {
    NEEDED
        .iter()
        .filter(|needed| !granted.contains(needed.permission))
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn guild(owner: &str, roles: &[(&str, Permissions)]) -> Value {
        let roles: Vec<Value> = roles
            .iter()
            .map(|(id, p)| json!({"id": id, "permissions": p.bits().to_string()}))
            .collect();
        json!({"id": "1", "owner_id": owner, "roles": roles})
    }

    #[test]
    fn permissions_add_up_from_everyone_and_the_bots_roles() {
        let roles = [
            ("1", Permissions::VIEW_CHANNEL),
            ("2", Permissions::SEND_MESSAGES),
            ("3", Permissions::ADD_REACTIONS),
        ];
        let member = json!({"roles": ["2"]});
        let granted = guild_permissions(&guild("9", &roles), &member, "7");
        assert_eq!(
            granted,
            Permissions::VIEW_CHANNEL | Permissions::SEND_MESSAGES,
            "@everyone and its own role, not others"
        );
        let names: Vec<&str> = missing(granted).iter().map(|n| n.name).collect();
        assert_eq!(
            names,
            [
                "Read Message History",
                "Send Messages in Threads",
                "Add Reactions"
            ]
        );
    }

    #[test]
    fn owners_and_administrators_have_everything() {
        let roles = [
            ("1", Permissions::empty()),
            ("2", Permissions::ADMINISTRATOR),
        ];
        let admin = json!({"roles": ["2"]});
        assert!(missing(guild_permissions(&guild("9", &roles), &admin, "7")).is_empty());
        let plain = json!({"roles": []});
        assert_eq!(
            missing(guild_permissions(&guild("9", &roles), &plain, "7")).len(),
            5
        );
        assert!(missing(guild_permissions(&guild("7", &roles), &plain, "7")).is_empty());
    }

    #[test]
    fn the_invite_asks_for_exactly_what_is_used() {
        assert_eq!(
            needed_bits(),
            (Permissions::VIEW_CHANNEL
                | Permissions::SEND_MESSAGES
                | Permissions::READ_MESSAGE_HISTORY
                | Permissions::SEND_MESSAGES_IN_THREADS
                | Permissions::ADD_REACTIONS)
                .bits()
        );
    }
}
