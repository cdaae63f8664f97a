-- A refund's states: requested (recorded, not yet accepted by the provider),
-- processing (accepted: a provider's SUCCESS to the refund call only means
-- that), then succeeded or failed as the provider's refund query reports.
-- What was 'pending' had not been accepted as far as we know: requested.
-- accepted_at: when the provider accepted it; queried_at: when it was last
-- asked about it. Times in µs since epoch.
--
-- SQLite cannot change a CHECK in place: refunds is made again, and with it
-- refund_lines, which refers to it (dropped first, so no foreign key ever
-- points at a missing row). The same as the PostgreSQL migration.
CREATE TABLE refunds_0011 AS SELECT * FROM refunds;
CREATE TABLE refund_lines_0011 AS SELECT * FROM refund_lines;
DROP TABLE refund_lines;
DROP TABLE refunds;

CREATE TABLE refunds (
    id            TEXT PRIMARY KEY,
    charge_id     TEXT NOT NULL REFERENCES charges (id),
    order_id      TEXT NOT NULL REFERENCES orders (id),
    request_id    TEXT NOT NULL,
    amount_fen    BIGINT NOT NULL CHECK (amount_fen > 0),
    state         TEXT NOT NULL CHECK (state IN ('requested', 'processing', 'succeeded', 'failed')),
    failure_code  TEXT,
    provider_ref  TEXT,
    created_by    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    reason        TEXT,
    restock       BIGINT NOT NULL DEFAULT 0,
    accepted_at   BIGINT,
    queried_at    BIGINT,
    UNIQUE (order_id, request_id)
);
CREATE INDEX refunds_state ON refunds (state);
INSERT INTO refunds (id, charge_id, order_id, request_id, amount_fen, state, failure_code,
        provider_ref, created_by, created_at, updated_at, reason, restock)
    SELECT id, charge_id, order_id, request_id, amount_fen,
           CASE state WHEN 'pending' THEN 'requested' ELSE state END,
           failure_code, provider_ref, created_by, created_at, updated_at, reason, restock
    FROM refunds_0011;

CREATE TABLE refund_lines (
    refund_id   TEXT NOT NULL REFERENCES refunds (id),
    line_no     BIGINT NOT NULL,
    qty_milli   BIGINT NOT NULL CHECK (qty_milli > 0),
    amount_fen  BIGINT NOT NULL CHECK (amount_fen >= 0),
    PRIMARY KEY (refund_id, line_no)
);
INSERT INTO refund_lines (refund_id, line_no, qty_milli, amount_fen)
    SELECT refund_id, line_no, qty_milli, amount_fen FROM refund_lines_0011;

DROP TABLE refund_lines_0011;
DROP TABLE refunds_0011;
