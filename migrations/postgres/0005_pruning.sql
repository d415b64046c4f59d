-- What `Store::prune` deletes by age, found without a full scan: finished jobs, seen platform
-- events, idle conversations (their turns go with them). answer_messages has its index (0004).
-- Keep in step with migrations/sqlite/0005_pruning.sql.
CREATE INDEX jobs_done_updated ON jobs (updated_at) WHERE state = 'done';
CREATE INDEX seen_events_seen_at ON seen_events (seen_at);
CREATE INDEX conversations_updated ON conversations (updated_at);
