-- Wake-ups when a job ends. Keep in step with migrations/postgres/0010_job_end_wakeups.sql.
--
-- Nothing to change in SQLite: its wake-ups are in-process (`Store::job_ends`), woken by the
-- store itself when a job ends. This version exists so both dialects keep the same list.
SELECT 1;
