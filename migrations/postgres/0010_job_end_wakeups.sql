-- Wake-ups when a job ends. Keep in step with migrations/sqlite/0010_job_end_wakeups.sql.
--
-- `jobs_notify` (0001) NOTIFYs `engram_jobs` when a job becomes claimable, which wakes the
-- claimers. A gateway waiting to report a posted file's outcome needs to hear when an ingest
-- job ends (done or dead), from whichever process ran it: that goes on its own channel, so
-- claimers are not woken by every job that ends.
CREATE FUNCTION engram_job_ends_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('engram_job_ends', NEW.kind);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER job_ends_notify
    AFTER UPDATE OF state ON jobs
    FOR EACH ROW WHEN (NEW.state IN ('done', 'dead'))
    EXECUTE FUNCTION engram_job_ends_notify();
