-- `/brain history`: one row per read of a channel's past, with its checkpoint (the streams
-- left to read and their cursors, the files queued, the progress message) saved after every
-- page, so a read continues where it stopped after a restart or on another process.
-- Keep in step with migrations/sqlite/0014_history_reads.sql.
CREATE TABLE history_reads (
    id           BIGSERIAL PRIMARY KEY,
    tenant_id    BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    brain_id     BIGINT NOT NULL REFERENCES brains (id) ON DELETE CASCADE,
    channel      TEXT    NOT NULL,
    job_id       BIGINT,
    -- Unix ms: messages older than this are not read (0: all of them).
    since_ms     BIGINT NOT NULL,
    state        TEXT    NOT NULL,
    messages     BIGINT NOT NULL DEFAULT 0,
    files        BIGINT NOT NULL DEFAULT 0,
    threads      BIGINT NOT NULL DEFAULT 0,
    status       TEXT    NOT NULL DEFAULT 'running'
                 CHECK (status IN ('running', 'done', 'failed')),
    started_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    finished_at  BIGINT
);
CREATE INDEX history_reads_channel ON history_reads (tenant_id, channel, status);
CREATE INDEX history_reads_job ON history_reads (job_id);
