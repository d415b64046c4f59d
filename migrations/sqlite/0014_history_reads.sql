-- `/brain history`: one row per read of a channel's past, with its checkpoint (the streams
-- left to read and their cursors, the files queued, the progress message) saved after every
-- page, so a read continues where it stopped after a restart or on another process.
-- Keep in step with migrations/postgres/0014_history_reads.sql.
CREATE TABLE history_reads (
    id           INTEGER PRIMARY KEY,
    tenant_id    INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    brain_id     INTEGER NOT NULL REFERENCES brains (id) ON DELETE CASCADE,
    channel      TEXT    NOT NULL,
    job_id       INTEGER,
    -- Unix ms: messages older than this are not read (0: all of them).
    since_ms     INTEGER NOT NULL,
    state        TEXT    NOT NULL,
    messages     INTEGER NOT NULL DEFAULT 0,
    files        INTEGER NOT NULL DEFAULT 0,
    threads      INTEGER NOT NULL DEFAULT 0,
    status       TEXT    NOT NULL DEFAULT 'running'
                 CHECK (status IN ('running', 'done', 'failed')),
    started_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    finished_at  INTEGER
);
CREATE INDEX history_reads_channel ON history_reads (tenant_id, channel, status);
CREATE INDEX history_reads_job ON history_reads (job_id);
