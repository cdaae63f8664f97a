-- Payment-code charges, their provider exchanges, and refunds. Money in fen,
-- times in µs since epoch. A charge's id is its out_trade_no at the provider.
CREATE TABLE charges (
    id             TEXT PRIMARY KEY,
    order_id       TEXT NOT NULL REFERENCES orders (id),
    attempt        BIGINT NOT NULL CHECK (attempt > 0),
    provider       TEXT NOT NULL,
    code_kind      TEXT NOT NULL,
    code_masked    TEXT NOT NULL,
    amount_fen     BIGINT NOT NULL CHECK (amount_fen > 0),
    refunded_fen   BIGINT NOT NULL DEFAULT 0 CHECK (refunded_fen >= 0 AND refunded_fen <= amount_fen),
    state          TEXT NOT NULL
        CHECK (state IN ('created', 'pending', 'succeeded', 'failed', 'reversed')),
    failure_code   TEXT,
    provider_txn   TEXT,
    deadline_at    BIGINT NOT NULL,
    created_by     TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    UNIQUE (order_id, attempt)
);
-- Exactly once: an order has at most one charge that may take or has taken money.
CREATE UNIQUE INDEX charges_live ON charges (order_id)
    WHERE state IN ('created', 'pending', 'succeeded');
CREATE INDEX charges_state ON charges (state);

-- Every call to the provider about a charge or refund, in order.
CREATE TABLE charge_exchanges (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    charge_id    TEXT NOT NULL REFERENCES charges (id),
    at           BIGINT NOT NULL,
    call         TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    detail       TEXT
);
CREATE INDEX charge_exchanges_charge ON charge_exchanges (charge_id, id);

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
    UNIQUE (order_id, request_id)
);
CREATE INDEX refunds_state ON refunds (state);
