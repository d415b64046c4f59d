//! Reading a Slack channel's past for `/brain history`: `conversations.history` (newest first)
//! and `conversations.replies` for each thread found, `cursor` paginated, 200 a page as Slack
//! advises. Each method takes from its own Tier 3 budget per workspace (Slack limits per
//! method), so reading history never eats into the `chat.update` budget answers stream with.
//! Messages are read as plain JSON (Slack adds message subtypes over time; one unknown kind
//! must not lose a page) and become what live learning would make of them.

use serde::Deserialize;
use serde_json::Value;

use super::api::{team_and_channel, SlackApi};
use super::budget::Tier;
use super::events::{thread_unit, ts_ms};
use crate::chat::history::{HistorySource, PastFile, PastMessage, PastPage};
use crate::chat::{ChannelKey, PlatformError};
use crate::store::conversations::UnitHint;

/// Messages per page (Slack allows up to 999 and advises no more than 200).
const PAGE: &str = "200";

#[derive(Debug, Deserialize)]
struct RawPage {
    #[serde(default)]
    messages: Vec<Value>,
    #[serde(default)]
    has_more: Option<bool>,
    #[serde(default)]
    response_metadata: Option<Value>,
}

impl SlackApi {
    pub(super) async fn history_page(
        &self,
        channel: &ChannelKey,
        source: &HistorySource,
        cursor: Option<&str>,
        since_ms: i64,
    ) -> Result<PastPage, PlatformError> {
        let (team, channel_id) = team_and_channel(channel)?;
        let identity = self.identity().await?;
        let oldest =
            (since_ms > 0).then(|| format!("{}.{:03}000", since_ms / 1000, since_ms % 1000));
        let (method, thread) = match source {
            HistorySource::Channel => ("conversations.history", None),
            HistorySource::Thread { id } => ("conversations.replies", Some(id.as_str())),
        };
        let mut params: Vec<(&str, Option<String>)> = vec![
            ("channel", Some(channel_id.to_string())),
            ("limit", Some(PAGE.to_string())),
            ("cursor", cursor.map(str::to_string)),
        ];
        if let Some(thread) = thread {
            params.push(("ts", Some(thread.to_string())));
        } else {
            params.push(("oldest", oldest));
        }
        let session = self.session();
        let page: RawPage = self
            .call(Tier::Method(method), team, channel_id, || {
                session.http_session_api.http_get(method, &params, None)
            })
            .await?;
        let mut out = PastPage::default();
        for message in &page.messages {
            let Some(ts) = message["ts"].as_str() else {
                continue;
            };
            let thread_ts = message["thread_ts"].as_str();
            // A thread's first message comes with its replies too; it was read with the channel.
            if thread.is_some() && thread_ts == Some(ts) {
                continue;
            }
            let posted_at = ts_ms(ts);
            if posted_at < since_ms && thread.is_none() {
                continue;
            }
            if !is_knowledge(message, &identity.bot_user) {
                continue;
            }
            let starts_thread = thread.is_none()
                && message["reply_count"].as_u64().unwrap_or(0) > 0
                && thread_ts.is_none_or(|t| t == ts);
            if starts_thread {
                out.threads.push(ts.to_string());
            }
            let unit = match (thread, starts_thread) {
                (Some(thread), _) => UnitHint::Thread(thread_unit(channel_id, thread)),
                (None, true) => UnitHint::Thread(thread_unit(channel_id, ts)),
                (None, false) => UnitHint::Chatter,
            };
            let user = message["user"].as_str().unwrap_or_default();
            let author = if user.is_empty() {
                "someone".to_string()
            } else {
                self.known_name(team, user).await
            };
            let files = message["files"]
                .as_array()
                .map(|files| files.iter().filter_map(past_file).collect())
                .unwrap_or_default();
            out.messages.push(PastMessage {
                key: format!("slack:{channel_id}:{ts}"),
                unit,
                author,
                text: message["text"]
                    .as_str()
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
                posted_at,
                link: Some(permalink(&identity.team_url, channel_id, ts, thread)),
                channel_label: format!("<#{channel_id}>"),
                files,
            });
        }
        let next = page
            .response_metadata
            .as_ref()
            .and_then(|meta| meta["next_cursor"].as_str())
            .filter(|cursor| !cursor.is_empty())
            .map(str::to_string);
        out.next = next.filter(|_| page.has_more.unwrap_or(true));
        Ok(out)
    }
}

/// A person's message, not addressed to engram: bots' messages, joins, topic changes and the
/// like, and questions (mentioning the bot) are not knowledge.
fn is_knowledge(message: &Value, bot_user: &str) -> bool {
    let person = message["user"]
        .as_str()
        .is_some_and(|user| user != bot_user)
        && message.get("bot_id").is_none_or(Value::is_null);
    let plain = match message["subtype"].as_str() {
        None => true,
        Some(subtype) => matches!(subtype, "file_share" | "thread_broadcast" | "me_message"),
    };
    let text = message["text"].as_str().unwrap_or_default();
    let to_bot = !bot_user.is_empty() && text.contains(&format!("<@{bot_user}>"));
    person && plain && !to_bot
}

/// A file of a past message that engram can download.
fn past_file(file: &Value) -> Option<PastFile> {
    let url = file["url_private_download"]
        .as_str()
        .or_else(|| file["url_private"].as_str())?;
    let name = file["name"]
        .as_str()
        .or_else(|| file["title"].as_str())
        .or_else(|| file["id"].as_str())?;
    Some(PastFile {
        name: name.to_string(),
        size: file["size"].as_u64().unwrap_or(0),
        url: url.to_string(),
    })
}

/// A message's permalink as Slack writes it: the workspace's URL, `archives/<channel>/p<ts
/// without its dot>`, and the thread for a reply.
pub(super) fn permalink(team_url: &str, channel: &str, ts: &str, thread: Option<&str>) -> String {
    let base = team_url.trim_end_matches('/');
    let mut link = format!("{base}/archives/{channel}/p{}", ts.replace('.', ""));
    if let Some(thread) = thread.filter(|thread| *thread != ts) {
        link.push_str(&format!("?thread_ts={thread}&cid={channel}"));
    }
    link
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn permalinks_are_slacks() {
        assert_eq!(
            permalink("https://team.slack.com/", "C1", "1700000001.000100", None),
            "https://team.slack.com/archives/C1/p1700000001000100"
        );
        assert_eq!(
            permalink("https://team.slack.com/", "C1", "1700000002.000100", Some("1700000001.000100")),
            "https://team.slack.com/archives/C1/p1700000002000100?thread_ts=1700000001.000100&cid=C1"
        );
        let key = crate::gateway::message_key_from_link(&permalink(
            "https://team.slack.com/",
            "C1",
            "1700000001.000100",
            None,
        ));
        assert_eq!(key.as_deref(), Some("slack:C1:1700000001.000100"));
    }

    #[test]
    fn only_peoples_messages_are_knowledge() {
        let bot = "U0BOT";
        assert!(is_knowledge(
            &json!({"user": "U1", "text": "we ship on friday"}),
            bot
        ));
        assert!(is_knowledge(
            &json!({"user": "U1", "subtype": "file_share", "text": ""}),
            bot
        ));
        assert!(!is_knowledge(
            &json!({"user": "U1", "text": "<@U0BOT> when do we ship?"}),
            bot
        ));
        assert!(!is_knowledge(
            &json!({"user": "U0BOT", "text": "an answer"}),
            bot
        ));
        assert!(!is_knowledge(
            &json!({"bot_id": "B1", "user": "U2", "text": "deploy ok"}),
            bot
        ));
        assert!(!is_knowledge(
            &json!({"user": "U1", "subtype": "channel_join", "text": "joined"}),
            bot
        ));
        assert!(!is_knowledge(
            &json!({"user": "U1", "subtype": "something_new", "text": "x"}),
            bot
        ));
    }
}
