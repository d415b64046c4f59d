-- A platform event is acted on by one gateway at a time: while a gateway acts on it, its row
-- names the gateway (`handler`) and how long the hold lasts (`held_until`, renewed while it
-- works); once it has acted, `held_until` is NULL. Another gateway that receives the same
-- event waits, and takes the event over when a hold runs out (its gateway died mid-way).
-- Rows from before (and file-report claims) have no hold: acted on.
-- Keep in step with migrations/sqlite/0006_event_holds.sql.
ALTER TABLE seen_events ADD COLUMN handler TEXT;
ALTER TABLE seen_events ADD COLUMN held_until BIGINT;
