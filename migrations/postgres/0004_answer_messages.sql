-- Which conversation each of the bot's answer messages belongs to, so a reply to any answer
-- message (or a thread opened on it) continues that answer's conversation, however deep the
-- chain. Keyed per tenant and channel: message ids are only unique within a channel on some
-- platforms. Keep in step with migrations/sqlite/0004_answer_messages.sql.
CREATE TABLE answer_messages (
    tenant_id     BIGINT  NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    channel       TEXT    NOT NULL,
    message_id    TEXT    NOT NULL,
    conversation  TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, channel, message_id)
);
CREATE INDEX answer_messages_created ON answer_messages (created_at);
