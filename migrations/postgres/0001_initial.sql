-- engram schema, version 1 (PostgreSQL). Timestamps are Unix milliseconds.
-- Keep in step with migrations/sqlite/0001_initial.sql.

CREATE TABLE tenants (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key         TEXT    NOT NULL UNIQUE,   -- local | discord:<guild> | slack:<team>
    name        TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL
);

CREATE TABLE brains (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id      BIGINT  NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name           TEXT    NOT NULL,
    system_prompt  TEXT,
    model          TEXT,
    created_at     BIGINT  NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE bindings (
    tenant_id   BIGINT  NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    channel     TEXT    NOT NULL,
    brain_id    BIGINT  NOT NULL REFERENCES brains (id) ON DELETE CASCADE,
    mode        TEXT    NOT NULL CHECK (mode IN ('ask', 'knowledge', 'both')),
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, channel)
);
CREATE INDEX bindings_brain ON bindings (brain_id);

CREATE TABLE documents (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    brain_id     BIGINT  NOT NULL REFERENCES brains (id) ON DELETE CASCADE,
    sha256       TEXT    NOT NULL,
    file_name    TEXT    NOT NULL,
    source_link  TEXT,
    status       TEXT    NOT NULL CHECK (status IN ('pending', 'indexed', 'failed')),
    error        TEXT,
    pages        BIGINT  NOT NULL DEFAULT 0,
    chunks       BIGINT  NOT NULL DEFAULT 0,
    ocr_pages    BIGINT  NOT NULL DEFAULT 0,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL,
    UNIQUE (brain_id, sha256)
);

CREATE TABLE chunks (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    document_id  BIGINT  NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    brain_id     BIGINT  NOT NULL REFERENCES brains (id) ON DELETE CASCADE,
    ordinal      BIGINT  NOT NULL,
    page         BIGINT,
    heading      TEXT,
    text         TEXT    NOT NULL,
    UNIQUE (document_id, ordinal)
);
CREATE INDEX chunks_brain ON chunks (brain_id);

CREATE TABLE jobs (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          TEXT    NOT NULL,
    payload       TEXT    NOT NULL,
    state         TEXT    NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'dead')),
    attempts      BIGINT  NOT NULL DEFAULT 0,
    max_attempts  BIGINT  NOT NULL,
    run_at        BIGINT  NOT NULL,
    lease_until   BIGINT,
    worker        TEXT,
    dedupe_key    TEXT    UNIQUE,
    last_error    TEXT,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL
);
-- The claim path: due jobs of one kind, oldest first.
CREATE INDEX jobs_claimable ON jobs (kind, run_at, id) WHERE state IN ('queued', 'failed');
-- The lease reaper: running jobs by lease expiry.
CREATE INDEX jobs_leased ON jobs (kind, lease_until) WHERE state = 'running';
CREATE INDEX jobs_state ON jobs (state, id);

CREATE TABLE conversations (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   BIGINT  NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    brain_id    BIGINT  NOT NULL REFERENCES brains (id) ON DELETE CASCADE,
    key         TEXT    NOT NULL,          -- platform thread or reply chain
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    UNIQUE (tenant_id, key)
);

CREATE TABLE turns (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversation_id  BIGINT  NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role             TEXT    NOT NULL CHECK (role IN ('user', 'assistant')),
    user_id          TEXT,
    text             TEXT    NOT NULL,
    created_at       BIGINT  NOT NULL
);
CREATE INDEX turns_conversation ON turns (conversation_id, id);

CREATE TABLE usage (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id          BIGINT  NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    brain_id           BIGINT  REFERENCES brains (id) ON DELETE SET NULL,
    user_id            TEXT,
    model              TEXT    NOT NULL,
    prompt_tokens      BIGINT  NOT NULL,
    completion_tokens  BIGINT  NOT NULL,
    cost_micros        BIGINT  NOT NULL,   -- millionths of the price table's currency
    created_at         BIGINT  NOT NULL
);
CREATE INDEX usage_tenant_time ON usage (tenant_id, created_at);

CREATE TABLE seen_events (
    platform  TEXT    NOT NULL,
    event_id  TEXT    NOT NULL,
    seen_at   BIGINT  NOT NULL,
    PRIMARY KEY (platform, event_id)
);

-- Wake idle workers (LISTEN engram_jobs) whenever a job may have become claimable.
CREATE FUNCTION engram_jobs_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('engram_jobs', NEW.kind);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER jobs_notify
    AFTER INSERT OR UPDATE OF state, run_at ON jobs
    FOR EACH ROW WHEN (NEW.state IN ('queued', 'failed'))
    EXECUTE FUNCTION engram_jobs_notify();
