//! Files attached to a question, read for its answer by the chat role: each downloaded through
//! the outlet's `ChatPlatform::download` (at most `ingest.max_file_bytes`), its text extracted
//! by `engram-extract` in a sandbox with the ingest role's limits (`ingest::read_file`, the
//! same code the ingest pipeline runs) and chunked as the ingest role chunks. A file that
//! cannot be read is named in one line saying why in words for people; the details go to the
//! log.

use serde::{Deserialize, Serialize};

use super::{ChatPlatform, PlatformError};
use crate::answer;
use crate::config::IngestConfig;
use crate::ingest::chunk::ChunkOptions;
use crate::ingest::sandbox::{ExtractError, Sandbox};
use crate::ingest::{read_file, ReadError};

/// Files read for one question, at most (Discord allows ten on a message).
pub const MAX_FILES: usize = 5;

/// Characters of a file's name shown in a notice, at most.
const NAME_CHARS: usize = 80;

/// A file attached to a question, as the `answer` job carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub name: String,
    /// As the platform declared it; 0 when it declares none (Slack's events). The download is
    /// capped either way.
    #[serde(default)]
    pub size: u64,
    pub url: String,
    /// A link to the message it was attached to, for citing it.
    #[serde(default)]
    pub link: Option<String>,
}

/// Reads attached files: downloads capped at `max_file_bytes`, extraction in `sandbox`,
/// chunks of the ingest role's size.
#[derive(Debug, Clone)]
pub struct AttachmentReader {
    pub sandbox: Sandbox,
    pub chunking: ChunkOptions,
    pub max_file_bytes: u64,
}

/// A question's attachments, read.
#[derive(Debug, Clone, Default)]
pub struct ReadAttachments {
    /// The files that could be read, in the order attached.
    pub files: Vec<answer::Attachment>,
    /// One line per file that could not be read, saying which and why.
    pub notices: Vec<String>,
}

impl AttachmentReader {
    /// The ingest role's extraction limits and chunk sizes. The chat role has its own
    /// extractor slots (as many as `ingest.workers`), so an answer never waits behind the files
    /// being learned.
    pub fn from_config(ingest: &IngestConfig) -> Self {
        Self {
            sandbox: Sandbox::from_config(ingest),
            chunking: ChunkOptions {
                max_tokens: ingest.chunk_tokens as usize,
                overlap_tokens: ingest.chunk_overlap_tokens as usize,
            },
            max_file_bytes: ingest.max_file_bytes,
        }
    }

    /// Reads each attachment (the first `MAX_FILES`); what cannot be read becomes a notice.
    pub async fn read(
        &self,
        platform: &dyn ChatPlatform,
        attachments: &[Attachment],
    ) -> ReadAttachments {
        let mut read = ReadAttachments::default();
        for attachment in attachments.iter().take(MAX_FILES) {
            match self.read_one(platform, attachment).await {
                Ok(chunks) => read.files.push(answer::Attachment {
                    name: attachment.name.clone(),
                    link: attachment.link.clone(),
                    chunks,
                }),
                Err(reason) => read.notices.push(format!(
                    "⚠️ I couldn't read the attachment {}: {}.",
                    shown_name(&attachment.name),
                    reason.says()
                )),
            }
        }
        if attachments.len() > MAX_FILES {
            read.notices.push(format!(
                "⚠️ I read only the first {MAX_FILES} of the {} attached files.",
                attachments.len()
            ));
        }
        read
    }

    async fn read_one(
        &self,
        platform: &dyn ChatPlatform,
        attachment: &Attachment,
    ) -> Result<Vec<crate::text::ChunkDraft>, Unreadable> {
        let limit = self.max_file_bytes;
        if attachment.size > limit {
            return Err(Unreadable::TooLarge { limit });
        }
        let bytes = match platform.download(&attachment.url, limit).await {
            Ok(bytes) => bytes,
            Err(PlatformError::TooLarge { limit }) => return Err(Unreadable::TooLarge { limit }),
            Err(error) => {
                tracing::warn!(%error, file = %attachment.name, "cannot download an attachment");
                return Err(Unreadable::Download);
            }
        };
        if bytes.is_empty() {
            return Err(Unreadable::Empty);
        }
        match read_file(&self.sandbox, &self.chunking, bytes).await {
            Ok(read) if read.chunks.is_empty() => Err(Unreadable::NoText),
            Ok(read) => Ok(read.chunks),
            Err(error) => {
                tracing::warn!(%error, file = %attachment.name, "cannot read an attachment");
                Err(Unreadable::from(&error))
            }
        }
    }
}

/// Why an attached file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreadable {
    TooLarge {
        limit: u64,
    },
    Download,
    Empty,
    NoText,
    Unsupported,
    Damaged,
    /// The extractor hit its time or memory limits, or crashed.
    Limits,
    /// Reading stopped for a reason not the file's (worth asking again).
    Interrupted,
}

impl From<&ReadError> for Unreadable {
    fn from(error: &ReadError) -> Self {
        match error {
            ReadError::Stage(_) => Unreadable::Interrupted,
            ReadError::Extract(ExtractError::Refused { kind, .. }) => match kind.as_str() {
                "unsupported" => Unreadable::Unsupported,
                "empty" => Unreadable::Empty,
                "no_text" => Unreadable::NoText,
                "corrupt" => Unreadable::Damaged,
                "too_large" | "too_many_pages" => Unreadable::Limits,
                _ => Unreadable::Interrupted,
            },
            ReadError::Extract(ExtractError::Crashed(_)) => Unreadable::Limits,
            ReadError::Extract(ExtractError::Interrupted(_)) => Unreadable::Interrupted,
        }
    }
}

impl Unreadable {
    /// Why, in a few words for people (no error text, no addresses).
    pub fn says(&self) -> String {
        match self {
            Unreadable::TooLarge { limit } => {
                format!("it is larger than {}, the most I read", size_words(*limit))
            }
            Unreadable::Download => "I couldn't download it; please attach it again".into(),
            Unreadable::Empty => "it is empty".into(),
            Unreadable::NoText => "it holds no text I could read".into(),
            Unreadable::Unsupported => "I can't read this kind of file".into(),
            Unreadable::Damaged => "it looks damaged".into(),
            Unreadable::Limits => "it is too large or complex to read within my limits".into(),
            Unreadable::Interrupted => "reading it was interrupted; please ask again".into(),
        }
    }
}

/// A byte count as people say it: `50 MB`, `4 KB`.
fn size_words(bytes: u64) -> String {
    const MB: u64 = 1024 * 1024;
    if bytes >= MB {
        format!("{} MB", bytes / MB)
    } else {
        format!("{} KB", bytes.div_ceil(1024))
    }
}

/// A file's name as a notice shows it: one line, no Markdown code marks, not too long.
fn shown_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .filter(|c| !c.is_control() && *c != '`')
        .take(NAME_CHARS)
        .collect();
    let clean = clean.trim();
    if clean.is_empty() {
        "(unnamed)".into()
    } else {
        format!("`{clean}`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_words_for_people() {
        assert_eq!(
            Unreadable::TooLarge { limit: 52_428_800 }.says(),
            "it is larger than 50 MB, the most I read"
        );
        assert_eq!(
            Unreadable::TooLarge { limit: 4096 }.says(),
            "it is larger than 4 KB, the most I read"
        );
        let refused = |kind: &str| {
            Unreadable::from(&ReadError::Extract(ExtractError::Refused {
                kind: kind.into(),
                message: "internal words /tmp/x".into(),
            }))
        };
        assert_eq!(refused("unsupported"), Unreadable::Unsupported);
        assert_eq!(refused("corrupt"), Unreadable::Damaged);
        assert_eq!(refused("no_text"), Unreadable::NoText);
        assert_eq!(refused("too_many_pages"), Unreadable::Limits);
        assert_eq!(refused("internal"), Unreadable::Interrupted);
        let crashed =
            Unreadable::from(&ReadError::Extract(ExtractError::Crashed("SIGSEGV".into())));
        assert_eq!(crashed, Unreadable::Limits);
        for reason in [
            Unreadable::Download,
            Unreadable::Empty,
            Unreadable::NoText,
            Unreadable::Unsupported,
            Unreadable::Damaged,
            Unreadable::Limits,
            Unreadable::Interrupted,
        ] {
            let says = reason.says();
            assert!(!says.contains('/') && !says.contains("error"), "{says}");
        }
    }

    #[test]
    fn names_are_shown_on_one_line_without_code_marks() {
        assert_eq!(shown_name("notes.md"), "`notes.md`");
        assert_eq!(shown_name("a`b\nc.md"), "`abc.md`");
        assert_eq!(shown_name(" \n"), "(unnamed)");
        assert_eq!(shown_name(&"x".repeat(200)).chars().count(), NAME_CHARS + 2);
    }

    #[test]
    fn answer_jobs_queued_before_attachments_existed_still_read() {
        let request: crate::chat::service::AnswerRequest =
            serde_json::from_value(serde_json::json!({
                "platform": "discord", "tenant": 1, "brain": 2, "channel": "discord:3",
                "placeholder": "4", "conversation": null, "user": "5", "question": "q?",
            }))
            .unwrap();
        assert!(request.attachments.is_empty());
        let attachment: Attachment =
            serde_json::from_value(serde_json::json!({"name": "a.md", "url": "https://x/a.md"}))
                .unwrap();
        assert_eq!((attachment.size, attachment.link), (0, None));
        // Without attachments the payload is what it was.
        let payload = serde_json::to_value(&request).unwrap();
        assert!(payload.get("attachments").is_none(), "{payload}");
    }
}
