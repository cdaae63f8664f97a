-- Cash taken at the counter: at most one tender per order (the order is
-- then paid). tendered_fen is what the customer handed over, change_fen
-- what went back; amount_fen = tendered_fen - change_fen is the order's
-- total when it was paid. by_whom is the actor (terminal:… or admin:…);
-- created_at is µs since epoch.
CREATE TABLE cash_tenders (
    order_id      TEXT PRIMARY KEY REFERENCES orders (id),
    store_id      TEXT NOT NULL,
    amount_fen    BIGINT NOT NULL CHECK (amount_fen > 0),
    tendered_fen  BIGINT NOT NULL CHECK (tendered_fen >= amount_fen),
    change_fen    BIGINT NOT NULL CHECK (change_fen = tendered_fen - amount_fen),
    by_whom       TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX cash_tenders_store ON cash_tenders (store_id, created_at);
