-- Wake-ups when a job ends, too. Keep in step with migrations/postgres/0010_job_end_wakeups.sql.
--
-- Nothing to change in SQLite: its wake-ups are in-process (`Store::wakeups`), and the store
-- now wakes them when a job ends as well as when one becomes claimable. This version exists so
-- both dialects keep the same list of versions.
SELECT 1;
