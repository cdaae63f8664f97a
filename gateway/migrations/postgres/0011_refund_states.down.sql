-- Back to pending / succeeded / failed: requested and processing were both
-- pending (the older gateway sends the refund again under its own
-- out_refund_no, which the provider answers as the same refund).
ALTER TABLE refunds DROP CONSTRAINT refunds_state_check;
UPDATE refunds SET state = 'pending' WHERE state IN ('requested', 'processing');
ALTER TABLE refunds ADD CONSTRAINT refunds_state_check
    CHECK (state IN ('pending', 'succeeded', 'failed'));
ALTER TABLE refunds DROP COLUMN queried_at;
ALTER TABLE refunds DROP COLUMN accepted_at;
