-- Retention (gateway/src/retention.rs) deletes old rows in small batches;
-- these indexes make each batch a short range read instead of a table scan.
-- (Numbered 0010 to stay clear of migrations other work may add meanwhile.)
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
CREATE INDEX outbox_delivered ON outbox (delivered_at) WHERE state = 'delivered';
CREATE INDEX channel_inbox_received ON channel_inbox (received_at);
CREATE INDEX channel_held_waiting ON channel_held (received_at) WHERE applied_at IS NULL;
CREATE INDEX channel_held_done ON channel_held (applied_at) WHERE applied_at IS NOT NULL;
