-- Wake-ups when a job ends, too. Keep in step with migrations/sqlite/0010_job_end_wakeups.sql.
--
-- The `jobs_notify` trigger NOTIFYs `engram_jobs` when a job becomes claimable; a gateway
-- waiting to report a posted file's outcome also needs to hear when an ingest job ends (done
-- or dead), so it waits on these wake-ups instead of asking every half second. Claimers woken
-- by an ended job find nothing new and sleep again.
DROP TRIGGER jobs_notify ON jobs;

CREATE TRIGGER jobs_notify
    AFTER INSERT OR UPDATE OF state, run_at ON jobs
    FOR EACH ROW WHEN (NEW.state IN ('queued', 'failed', 'done', 'dead'))
    EXECUTE FUNCTION engram_jobs_notify();
