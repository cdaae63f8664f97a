-- Stores, catalog, stock, orders and their feed. Money in fen, quantities in
-- thousandths of their unit (pieces × 1000 or grams), times in µs since epoch.
CREATE TABLE stores (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    state         TEXT NOT NULL DEFAULT 'open',
    event_seq     BIGINT NOT NULL DEFAULT 0,
    catalog_rev   BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE products (
    sku           TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    unit          TEXT NOT NULL CHECK (unit IN ('piece', 'kg')),
    price_fen     BIGINT NOT NULL CHECK (price_fen >= 0),
    rev           BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE store_items (
    store_id       TEXT NOT NULL REFERENCES stores (id),
    sku            TEXT NOT NULL REFERENCES products (sku),
    available      BIGINT NOT NULL DEFAULT 1,
    price_fen      BIGINT CHECK (price_fen IS NULL OR price_fen >= 0),
    on_hand        BIGINT NOT NULL DEFAULT 0 CHECK (on_hand >= 0),
    reserved       BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    snoozed_until  BIGINT,
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (store_id, sku)
);

CREATE TABLE display_counters (
    store_id      TEXT NOT NULL REFERENCES stores (id),
    business_day  TEXT NOT NULL,
    last_no       BIGINT NOT NULL,
    PRIMARY KEY (store_id, business_day)
);

CREATE TABLE orders (
    id                TEXT PRIMARY KEY,
    store_id          TEXT NOT NULL REFERENCES stores (id),
    channel           TEXT NOT NULL,
    platform          TEXT NOT NULL DEFAULT '',
    channel_order_id  TEXT,
    display_no        BIGINT NOT NULL,
    business_day      TEXT NOT NULL,
    status            TEXT NOT NULL,
    payment_status    TEXT NOT NULL,
    total_fen         BIGINT NOT NULL,
    note              TEXT,
    created_by        TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    seq               BIGINT NOT NULL
);
CREATE INDEX orders_store_seq ON orders (store_id, seq);
CREATE UNIQUE INDEX orders_channel_ref ON orders (store_id, channel, platform, channel_order_id)
    WHERE channel_order_id IS NOT NULL;

CREATE TABLE order_lines (
    order_id        TEXT NOT NULL REFERENCES orders (id),
    line_no         BIGINT NOT NULL,
    sku             TEXT NOT NULL,
    name            TEXT NOT NULL,
    unit            TEXT NOT NULL,
    qty_milli       BIGINT NOT NULL,
    unit_price_fen  BIGINT NOT NULL,
    line_total_fen  BIGINT NOT NULL,
    PRIMARY KEY (order_id, line_no)
);

CREATE TABLE order_history (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id     TEXT NOT NULL REFERENCES orders (id),
    at           BIGINT NOT NULL,
    by_whom      TEXT NOT NULL,
    from_status  TEXT,
    to_status    TEXT NOT NULL,
    reason       TEXT
);
CREATE INDEX order_history_order ON order_history (order_id, id);

-- The store's feed: one row per change, numbered per store without gaps in
-- commit order (the number is taken under the store row's lock).
CREATE TABLE order_events (
    store_id   TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    order_id   TEXT NOT NULL,
    kind       TEXT NOT NULL,
    at         BIGINT NOT NULL,
    payload    TEXT NOT NULL,
    PRIMARY KEY (store_id, seq)
);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    key_hash     TEXT NOT NULL UNIQUE,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'app', 'terminal')),
    store_id     TEXT,
    terminal_id  TEXT,
    label        TEXT,
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);
CREATE UNIQUE INDEX api_keys_terminal ON api_keys (terminal_id)
    WHERE terminal_id IS NOT NULL AND revoked_at IS NULL;

CREATE TABLE idempotency_keys (
    key_id        TEXT NOT NULL,
    idem_key      TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    status_code   BIGINT NOT NULL,
    response      TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (key_id, idem_key)
);
