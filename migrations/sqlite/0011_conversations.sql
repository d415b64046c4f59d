-- Conversation knowledge: what people say in a channel that learns its messages. A message
-- belongs to one unit (a thread, a reply chain, or a window of channel chatter); a unit is
-- learned as one document, again whenever it changed (`revision` past `learned_revision`),
-- by one process at a time (`lease_until`, `worker`). A deleted message's row is deleted.
-- Keep in step with migrations/postgres/0011_conversations.sql.

-- 1: the channel's messages are learned (`messages:on`); bindings made before this version
-- never asked, so they stay off until linked again.
ALTER TABLE bindings ADD COLUMN messages INTEGER NOT NULL DEFAULT 0;

CREATE TABLE conversation_units (
    id               INTEGER PRIMARY KEY,
    tenant_id        INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    brain_id         INTEGER NOT NULL REFERENCES brains (id) ON DELETE CASCADE,
    channel          TEXT    NOT NULL,          -- the bound channel (a thread's parent)
    unit_key         TEXT    NOT NULL,          -- platform-qualified: the thread, or the first message
    kind             TEXT    NOT NULL CHECK (kind IN ('thread', 'chain', 'window')),
    title            TEXT    NOT NULL,          -- what it is cited as, fixed when it starts
    link             TEXT,                      -- to its first message
    first_at         INTEGER NOT NULL,
    last_at          INTEGER NOT NULL,
    revision         INTEGER NOT NULL DEFAULT 0,
    learned_revision INTEGER NOT NULL DEFAULT 0,
    document_id      INTEGER,                   -- the document that holds it now
    lease_until      INTEGER,
    worker           TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    retry_at         INTEGER NOT NULL DEFAULT 0,
    UNIQUE (tenant_id, unit_key)
);
CREATE INDEX conversation_units_changed ON conversation_units (retry_at)
    WHERE revision > learned_revision;
CREATE INDEX conversation_units_channel ON conversation_units (tenant_id, channel, kind, last_at);

CREATE TABLE conversation_messages (
    tenant_id    INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    message_key  TEXT    NOT NULL,              -- platform-qualified message id
    unit_id      INTEGER NOT NULL REFERENCES conversation_units (id) ON DELETE CASCADE,
    author       TEXT    NOT NULL,
    text         TEXT    NOT NULL,
    posted_at    INTEGER NOT NULL,
    edited_at    INTEGER,
    link         TEXT,
    PRIMARY KEY (tenant_id, message_key)
);
CREATE INDEX conversation_messages_unit ON conversation_messages (unit_id, posted_at);
