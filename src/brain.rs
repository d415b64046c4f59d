//! Domain values: tenants, brains and their names, checked once at the edge. No I/O.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Store id of a tenant (a Discord guild, a Slack workspace, or the shell's `local`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(pub i64);

/// Store id of a brain. Every search takes one by signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BrainId(pub i64);

impl fmt::Display for BrainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A tenant's stable key: `local`, `discord:<guild id>` or `slack:<team id>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct TenantKey(String);

impl TenantKey {
    /// The tenant of brains managed from the shell.
    pub fn local() -> Self {
        Self("local".to_string())
    }

    pub fn parse(value: &str) -> Result<Self, String> {
        let valid_id = |id: &str| {
            !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric())
        };
        let ok = value == "local"
            || value.strip_prefix("discord:").is_some_and(valid_id)
            || value.strip_prefix("slack:").is_some_and(valid_id);
        if ok {
            Ok(Self(value.to_string()))
        } else {
            Err(format!(
                "`{value}` is not a tenant: use `local`, `discord:<guild id>` or `slack:<team id>`"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A brain's name: 1–64 characters of lowercase letters, digits, `-` and `_`, so it is easy to
/// type in a slash command and safe in any message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct BrainName(String);

impl BrainName {
    pub fn parse(value: &str) -> Result<Self, String> {
        let name = value.trim();
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if valid {
            Ok(Self(name.to_string()))
        } else {
            Err(format!(
                "`{value}` is not a valid brain name: use 1-64 lowercase letters, digits, - or _ \
                 (e.g. `handbook`)"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BrainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A brain as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Brain {
    pub id: BrainId,
    pub tenant: TenantId,
    pub name: BrainName,
    /// Overrides the default system prompt when set.
    pub system_prompt: Option<String>,
    /// Overrides `llm.model` when set.
    pub model: Option<String>,
    /// The brain's own monthly cap in millionths of a US dollar (`/brain budget`); `None`:
    /// `budgets.monthly_usd_per_brain`. 0 = no cap.
    pub budget_micros: Option<i64>,
    pub created_at: i64,
}

/// Store id of a document (one file in one brain).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct DocumentId(pub i64);

/// Where a document is in ingestion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DocumentStatus {
    /// Queued or being extracted and indexed.
    Pending,
    /// Searchable.
    Indexed,
    /// Refused or broken; `error` says why.
    Failed,
}

impl DocumentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentStatus::Pending => "pending",
            DocumentStatus::Indexed => "indexed",
            DocumentStatus::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> Result<Self, String> {
        match value {
            "pending" => Ok(DocumentStatus::Pending),
            "indexed" => Ok(DocumentStatus::Indexed),
            "failed" => Ok(DocumentStatus::Failed),
            other => Err(format!("unknown document status `{other}`")),
        }
    }
}

/// One version of a file in a brain, as stored: the current one, or a newer one still being
/// read. Unique per brain by the sha256 of its bytes; a document is its name in its scope.
#[derive(Debug, Clone, Serialize)]
pub struct Document {
    pub id: DocumentId,
    pub brain: BrainId,
    pub sha256: String,
    pub file_name: String,
    /// Where the name is unique: `""` for files from the shell, the channel for files posted
    /// in chat.
    pub scope: String,
    /// 1 for the first version of the name in its scope, one more for each new version.
    pub version: u32,
    /// Who added this version: the platform user who posted it, or `local` from the shell.
    pub added_by: Option<String>,
    /// Where the file was posted (a message link), for citing it.
    pub source_link: Option<String>,
    pub status: DocumentStatus,
    pub error: Option<String>,
    pub pages: u32,
    pub chunks: u32,
    pub ocr_pages: u32,
    /// The ingest job working on it, if any.
    pub job_id: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A file to add to a brain.
#[derive(Debug, Clone)]
pub struct NewDocument {
    pub brain: BrainId,
    pub sha256: String,
    pub file_name: String,
    pub source_link: Option<String>,
    /// See [`Document::scope`].
    pub scope: String,
    /// See [`Document::added_by`].
    pub added_by: Option<String>,
}

/// An earlier version of a document, replaced by a newer one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocumentVersion {
    /// The id the version had as a document.
    pub document_id: DocumentId,
    pub scope: String,
    pub file_name: String,
    pub version: u32,
    pub sha256: String,
    pub added_by: Option<String>,
    /// What it was when it was replaced: `indexed`, or `failed` / `pending` for a version that
    /// never answered.
    pub status: String,
    pub pages: u32,
    pub chunks: u32,
    pub added_at: i64,
    pub replaced_at: i64,
    /// The document id of the version that replaced it.
    pub replaced_by: DocumentId,
}

/// What adding a file to a brain found.
#[derive(Debug, Clone)]
pub enum AddedDocument {
    /// New (or previously failed, now pending again): ingest it.
    Pending(Document),
    /// The same bytes are already indexed, or being ingested: nothing to do.
    Known(Document),
}

/// What a channel bound to a brain is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BindingMode {
    /// Questions are answered from the brain.
    Ask,
    /// Files posted there are ingested into the brain.
    Knowledge,
    /// Both.
    Both,
}

impl BindingMode {
    pub fn as_str(self) -> &'static str {
        match self {
            BindingMode::Ask => "ask",
            BindingMode::Knowledge => "knowledge",
            BindingMode::Both => "both",
        }
    }

    pub fn parse(value: &str) -> Result<Self, String> {
        match value.trim() {
            "ask" => Ok(BindingMode::Ask),
            "knowledge" => Ok(BindingMode::Knowledge),
            "both" => Ok(BindingMode::Both),
            other => Err(format!(
                "unknown channel mode `{other}` (modes: ask, knowledge, both)"
            )),
        }
    }

    /// Questions asked here are answered.
    pub fn answers(self) -> bool {
        matches!(self, BindingMode::Ask | BindingMode::Both)
    }

    /// Files posted here are ingested.
    pub fn learns(self) -> bool {
        matches!(self, BindingMode::Knowledge | BindingMode::Both)
    }
}

/// A channel's brain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Binding {
    pub tenant: TenantId,
    /// The platform-qualified channel key.
    pub channel: String,
    pub brain: BrainId,
    pub mode: BindingMode,
}

/// What a brain holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BrainStats {
    /// Files (conversations learned are counted by `Store::conversation_stats`).
    pub documents: u64,
    pub failed_documents: u64,
    pub chunks: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brain_names() {
        assert!(BrainName::parse("handbook").is_ok());
        assert!(BrainName::parse("team_docs-2").is_ok());
        assert!(BrainName::parse("").is_err());
        assert!(BrainName::parse("Handbook").is_err());
        assert!(BrainName::parse("has space").is_err());
        assert!(BrainName::parse(&"a".repeat(65)).is_err());
    }

    #[test]
    fn tenant_keys() {
        assert!(TenantKey::parse("local").is_ok());
        assert!(TenantKey::parse("discord:81384788765712384").is_ok());
        assert!(TenantKey::parse("slack:T0123ABC").is_ok());
        assert!(TenantKey::parse("discord:").is_err());
        assert!(TenantKey::parse("irc:libera").is_err());
    }
}
