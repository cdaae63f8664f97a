-- Back to pending / succeeded / failed: requested and processing were both
-- pending (the older gateway sends the refund again under its own
-- out_refund_no, which the provider answers as the same refund). Made
-- again as in the up migration, without accepted_at and queried_at.
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
    state         TEXT NOT NULL CHECK (state IN ('pending', 'succeeded', 'failed')),
    failure_code  TEXT,
    provider_ref  TEXT,
    created_by    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    reason        TEXT,
    restock       BIGINT NOT NULL DEFAULT 0,
    UNIQUE (order_id, request_id)
);
CREATE INDEX refunds_state ON refunds (state);
INSERT INTO refunds (id, charge_id, order_id, request_id, amount_fen, state, failure_code,
        provider_ref, created_by, created_at, updated_at, reason, restock)
    SELECT id, charge_id, order_id, request_id, amount_fen,
           CASE WHEN state IN ('requested', 'processing') THEN 'pending' ELSE state END,
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
