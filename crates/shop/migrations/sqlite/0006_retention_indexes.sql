-- The retention task deletes old rows in small batches; each batch finds them by index.
CREATE INDEX analytics_events_created ON analytics_events (created_at);
CREATE INDEX inbound_webhooks_processed ON inbound_webhooks (processed_at)
    WHERE processed_at IS NOT NULL;
CREATE INDEX webhook_deliveries_job ON webhook_deliveries (job_id);
