-- Orders paid before they reach the gateway (inside the brand's app): the
-- app's payment provider and transaction reference. One reference pays one
-- order. Money in fen, times in µs since epoch.
CREATE TABLE prepayments (
    order_id    TEXT PRIMARY KEY REFERENCES orders (id),
    provider    TEXT NOT NULL,
    reference   TEXT NOT NULL,
    amount_fen  BIGINT NOT NULL CHECK (amount_fen >= 0),
    created_at  BIGINT NOT NULL,
    UNIQUE (provider, reference)
);
