-- Messages deleted before (or while) they were recorded: a delete can overtake the message it
-- deletes (each event is handled on its own task, by every gateway that sees it), so a deleted
-- message key is kept here and recording it later is refused. Pruned with seen events.
-- Keep in step with migrations/sqlite/0013_tombstones.sql.
CREATE TABLE conversation_tombstones (
    tenant_id    BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    message_key  TEXT    NOT NULL,
    deleted_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, message_key)
);
