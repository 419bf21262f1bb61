-- Secret rotation (the previous secret signs too until previous_secret_until, ms since the
-- epoch) and deletion (kept for the record of its deliveries, never delivered to again).
ALTER TABLE webhook_endpoints ADD COLUMN previous_secret TEXT;
ALTER TABLE webhook_endpoints ADD COLUMN previous_secret_until INTEGER;
ALTER TABLE webhook_endpoints ADD COLUMN deleted_at TEXT;
