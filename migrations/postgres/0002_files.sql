-- Files waiting to be ingested, kept in the store so any ingest process can read them and
-- nothing is lost if the source link expires. Deleted once their ingest job has ended.
-- Keep in step with migrations/sqlite/0002_files.sql.
CREATE TABLE files (
    sha256      TEXT    PRIMARY KEY,
    size        BIGINT  NOT NULL,
    bytes       BYTEA   NOT NULL,
    created_at  BIGINT  NOT NULL
);

-- The document an ingest job produces; `job_id` lets `engram jobs` and the chat say which file a
-- job is about.
ALTER TABLE documents ADD COLUMN job_id BIGINT;
