-- A refund's states: requested (recorded, not yet accepted by the provider),
-- processing (accepted: a provider's SUCCESS to the refund call only means
-- that), then succeeded or failed as the provider's refund query reports.
-- What was 'pending' had not been accepted as far as we know: requested.
-- accepted_at: when the provider accepted it; queried_at: when it was last
-- asked about it. Times in µs since epoch.
ALTER TABLE refunds DROP CONSTRAINT refunds_state_check;
UPDATE refunds SET state = 'requested' WHERE state = 'pending';
ALTER TABLE refunds ADD CONSTRAINT refunds_state_check
    CHECK (state IN ('requested', 'processing', 'succeeded', 'failed'));
ALTER TABLE refunds ADD COLUMN accepted_at BIGINT;
ALTER TABLE refunds ADD COLUMN queried_at BIGINT;
