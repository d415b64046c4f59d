-- Cost and quality governance. Keep in step with migrations/postgres/0009_usage_budgets.sql.
--
-- Every answer now leaves one `usage` row (an answer without an LLM call has model '' and no
-- tokens), with how it ended, where it was asked, its question and cited sources (what a vote
-- on it is about), and its latency phases in milliseconds (NULL where a phase did not happen,
-- and on rows written before this version).
ALTER TABLE usage ADD COLUMN platform TEXT;
ALTER TABLE usage ADD COLUMN outcome TEXT;
ALTER TABLE usage ADD COLUMN question TEXT;
ALTER TABLE usage ADD COLUMN sources TEXT;            -- JSON array of the cited files
ALTER TABLE usage ADD COLUMN queue_ms INTEGER;
ALTER TABLE usage ADD COLUMN retrieval_ms INTEGER;
ALTER TABLE usage ADD COLUMN first_token_ms INTEGER;
ALTER TABLE usage ADD COLUMN total_ms INTEGER;
ALTER TABLE usage ADD COLUMN tokens_per_s REAL;
CREATE INDEX usage_time ON usage (created_at);

-- A brain's own monthly cap (`/brain budget`), millionths of a US dollar; NULL: the
-- configured budgets.monthly_usd_per_brain.
ALTER TABLE brains ADD COLUMN budget_micros INTEGER;

-- One vote per person and answer (a usage row); voting again changes it.
CREATE TABLE feedback (
    answer_id   INTEGER NOT NULL REFERENCES usage (id) ON DELETE CASCADE,
    user_id     TEXT    NOT NULL,
    vote        INTEGER NOT NULL CHECK (vote IN (-1, 1)),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (answer_id, user_id)
);

-- What each capped scope spent in a period: `tenant:<id>` and `brain:<id>` per month (from its
-- first millisecond, UTC), `user:<tenant id>:<user>` per day. `warned` is 1 once crossing
-- budgets.warn_at has been announced in the period. Rows are locked (upserted) first by every
-- reservation and settlement of their scopes, so those run one at a time per scope.
CREATE TABLE budget_periods (
    scope         TEXT    NOT NULL,
    period_start  INTEGER NOT NULL,
    spent_micros  INTEGER NOT NULL DEFAULT 0,
    questions     INTEGER NOT NULL DEFAULT 0,
    warned        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, period_start)
);

-- Spending an answer in flight may still do: reserved before its LLM call, deleted when the
-- call's usage is settled. A reservation whose process died counts until `held_until`.
CREATE TABLE budget_reservations (
    id            INTEGER PRIMARY KEY,
    tenant_id     INTEGER NOT NULL,
    brain_id      INTEGER NOT NULL,
    period_start  INTEGER NOT NULL,
    micros        INTEGER NOT NULL,
    held_until    INTEGER NOT NULL
);
CREATE INDEX budget_reservations_tenant ON budget_reservations (tenant_id, period_start);
CREATE INDEX budget_reservations_brain ON budget_reservations (brain_id, period_start);
