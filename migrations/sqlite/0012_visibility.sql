-- Channels not every member of the server or workspace can read (a Slack private channel; a
-- Discord channel denying View Channel to @everyone, and its threads). What was learned in one
-- (files posted there, conversations held there) answers only questions asked there; the
-- adapters keep this table current as channels change.
-- Keep in step with migrations/postgres/0012_visibility.sql.
CREATE TABLE restricted_channels (
    tenant_id   INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    channel     TEXT    NOT NULL,
    since       INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, channel)
);
