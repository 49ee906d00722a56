-- Finding a job whose lease ran out reads this index instead of every running job.
CREATE INDEX jobs_leases ON jobs (status, lease_until);
