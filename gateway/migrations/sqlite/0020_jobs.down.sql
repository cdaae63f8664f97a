-- Only the scheduler's bookkeeping: no business data is lost.
DROP TABLE job_runs;
DROP TABLE job_leases;
