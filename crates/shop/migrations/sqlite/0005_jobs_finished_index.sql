-- The operators' console counts jobs finished per minute.
CREATE INDEX keel_jobs_finished ON keel_jobs (finished_at) WHERE finished_at IS NOT NULL;
