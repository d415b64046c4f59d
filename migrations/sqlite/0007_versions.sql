-- Versions: a file posted again under the same name (in chat: in the same channel) with new
-- bytes is a new version of the same document. `documents` holds the versions that count (the
-- current one, and a newer one still being read); an older version, once the newer one is
-- indexed, moves to `document_versions` in the same transaction that marks the newer one
-- indexed, so a search sees one version or the other, never both and never neither.
-- Keep in step with migrations/postgres/0007_versions.sql.

-- Where the name is unique: '' for files from the shell, the channel for files posted in chat.
ALTER TABLE documents ADD COLUMN scope TEXT NOT NULL DEFAULT '';
-- 1 for the first version of a name in its scope, then one more for each new version.
ALTER TABLE documents ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
-- Who added this version: the platform user who posted it, or `local` from the shell.
ALTER TABLE documents ADD COLUMN added_by TEXT;
CREATE INDEX documents_name ON documents (brain_id, scope, file_name);
-- Files posted in chat before versions existed: their channel, from the ingest job that read
-- them while the job is still kept (a file posted in a thread gets the thread's channel).
UPDATE documents SET scope = COALESCE((
    SELECT json_extract(j.payload, '$.report.channel') FROM jobs j WHERE j.id = documents.job_id
), '');

-- Earlier versions, and what happened to them. `document_id` is the id the version had; an
-- index that keeps chunks outside the store (Qdrant) deletes that id's points and then sets
-- `purged`, so a crash in between is finished by the next attempt.
CREATE TABLE document_versions (
    id           INTEGER PRIMARY KEY,
    brain_id     INTEGER NOT NULL REFERENCES brains (id) ON DELETE CASCADE,
    document_id  INTEGER NOT NULL,
    scope        TEXT    NOT NULL,
    file_name    TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    sha256       TEXT    NOT NULL,
    added_by     TEXT,
    status       TEXT    NOT NULL,          -- what it was when replaced: indexed, failed, pending
    pages        INTEGER NOT NULL,
    chunks       INTEGER NOT NULL,
    added_at     INTEGER NOT NULL,
    replaced_at  INTEGER NOT NULL,
    replaced_by  INTEGER NOT NULL,          -- the document id of the version that replaced it
    purged       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX document_versions_name ON document_versions (brain_id, scope, file_name, version);
CREATE INDEX document_versions_unpurged ON document_versions (brain_id) WHERE purged = 0;
