-- engram schema, version 1 (SQLite). Timestamps are Unix milliseconds.
-- Keep in step with migrations/postgres/0001_initial.sql.

CREATE TABLE tenants (
    id          INTEGER PRIMARY KEY,
    key         TEXT    NOT NULL UNIQUE,   -- local | discord:<guild> | slack:<team>
    name        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE brains (
    id             INTEGER PRIMARY KEY,
    tenant_id      INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name           TEXT    NOT NULL,
    system_prompt  TEXT,
    model          TEXT,
    created_at     INTEGER NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE bindings (
    tenant_id   INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    channel     TEXT    NOT NULL,
    brain_id    INTEGER NOT NULL REFERENCES brains (id) ON DELETE CASCADE,
    mode        TEXT    NOT NULL CHECK (mode IN ('ask', 'knowledge', 'both')),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, channel)
);
CREATE INDEX bindings_brain ON bindings (brain_id);

CREATE TABLE documents (
    id           INTEGER PRIMARY KEY,
    brain_id     INTEGER NOT NULL REFERENCES brains (id) ON DELETE CASCADE,
    sha256       TEXT    NOT NULL,
    file_name    TEXT    NOT NULL,
    source_link  TEXT,
    status       TEXT    NOT NULL CHECK (status IN ('pending', 'indexed', 'failed')),
    error        TEXT,
    pages        INTEGER NOT NULL DEFAULT 0,
    chunks       INTEGER NOT NULL DEFAULT 0,
    ocr_pages    INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    UNIQUE (brain_id, sha256)
);

CREATE TABLE chunks (
    id           INTEGER PRIMARY KEY,
    document_id  INTEGER NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    brain_id     INTEGER NOT NULL REFERENCES brains (id) ON DELETE CASCADE,
    ordinal      INTEGER NOT NULL,
    page         INTEGER,
    heading      TEXT,
    text         TEXT    NOT NULL,
    UNIQUE (document_id, ordinal)
);
CREATE INDEX chunks_brain ON chunks (brain_id);

CREATE TABLE jobs (
    id            INTEGER PRIMARY KEY,
    kind          TEXT    NOT NULL,
    payload       TEXT    NOT NULL,
    state         TEXT    NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'dead')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL,
    run_at        INTEGER NOT NULL,
    lease_until   INTEGER,
    worker        TEXT,
    dedupe_key    TEXT    UNIQUE,
    last_error    TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
-- The claim path: due jobs of one kind, oldest first.
CREATE INDEX jobs_claimable ON jobs (kind, run_at, id) WHERE state IN ('queued', 'failed');
-- The lease reaper: running jobs by lease expiry.
CREATE INDEX jobs_leased ON jobs (kind, lease_until) WHERE state = 'running';
CREATE INDEX jobs_state ON jobs (state, id);

CREATE TABLE conversations (
    id          INTEGER PRIMARY KEY,
    tenant_id   INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    brain_id    INTEGER NOT NULL REFERENCES brains (id) ON DELETE CASCADE,
    key         TEXT    NOT NULL,          -- platform thread or reply chain
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (tenant_id, key)
);

CREATE TABLE turns (
    id               INTEGER PRIMARY KEY,
    conversation_id  INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role             TEXT    NOT NULL CHECK (role IN ('user', 'assistant')),
    user_id          TEXT,
    text             TEXT    NOT NULL,
    created_at       INTEGER NOT NULL
);
CREATE INDEX turns_conversation ON turns (conversation_id, id);

CREATE TABLE usage (
    id                 INTEGER PRIMARY KEY,
    tenant_id          INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    brain_id           INTEGER REFERENCES brains (id) ON DELETE SET NULL,
    user_id            TEXT,
    model              TEXT    NOT NULL,
    prompt_tokens      INTEGER NOT NULL,
    completion_tokens  INTEGER NOT NULL,
    cost_micros        INTEGER NOT NULL,   -- millionths of the price table's currency
    created_at         INTEGER NOT NULL
);
CREATE INDEX usage_tenant_time ON usage (tenant_id, created_at);

CREATE TABLE seen_events (
    platform  TEXT    NOT NULL,
    event_id  TEXT    NOT NULL,
    seen_at   INTEGER NOT NULL,
    PRIMARY KEY (platform, event_id)
);
