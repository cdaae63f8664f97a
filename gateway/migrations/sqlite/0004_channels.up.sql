-- Third-party channels: what platforms pushed (de-duplicated), the delivery
-- details of their orders, how their items map to our SKUs, pushes held
-- until their order arrives, and the outbox of calls back to the platforms.
-- Money in fen, times in µs since epoch.

-- Every push a channel accepted, once. `push_ref` is the platform's order id for
-- order events, or its event id (webhooks); a repeat hits the primary key.
CREATE TABLE channel_inbox (
    platform           TEXT NOT NULL,
    kind               TEXT NOT NULL,
    push_ref           TEXT NOT NULL,
    platform_order_id  TEXT NOT NULL,
    store_id           TEXT,
    order_id           TEXT,
    outcome            TEXT NOT NULL,
    received_at        BIGINT NOT NULL,
    PRIMARY KEY (platform, kind, push_ref)
);

-- A platform's stores and ours: registered from configuration or on the
-- first push (same id by default). Stock changes go to the platforms a
-- store is registered with.
CREATE TABLE channel_stores (
    platform           TEXT NOT NULL,
    platform_store_id  TEXT NOT NULL,
    store_id           TEXT NOT NULL REFERENCES stores (id),
    created_at         BIGINT NOT NULL,
    PRIMARY KEY (platform, platform_store_id)
);
CREATE INDEX channel_stores_store ON channel_stores (store_id);

-- The delivery side of a third-party order.
CREATE TABLE third_party_orders (
    order_id            TEXT PRIMARY KEY REFERENCES orders (id),
    platform            TEXT NOT NULL,
    platform_order_id   TEXT NOT NULL,
    platform_store_id   TEXT NOT NULL,
    day_seq             BIGINT,
    recipient_name      TEXT,
    recipient_phone     TEXT,
    recipient_address   TEXT,
    shipping_fee_fen    BIGINT NOT NULL DEFAULT 0,
    paid_fen            BIGINT NOT NULL DEFAULT 0,
    original_fen        BIGINT NOT NULL DEFAULT 0,
    store_receives_fen  BIGINT NOT NULL DEFAULT 0,
    discounts           TEXT NOT NULL DEFAULT '[]',
    attention           TEXT NOT NULL DEFAULT '',
    unmapped            TEXT NOT NULL DEFAULT '[]',
    refund_state        TEXT,
    alerted_at          BIGINT,
    created_at          BIGINT NOT NULL,
    UNIQUE (platform, platform_order_id)
);
CREATE INDEX third_party_orders_unalerted ON third_party_orders (created_at)
    WHERE alerted_at IS NULL;

-- A platform item code to our SKU, for one store or (store_id '') all.
-- per_item_milli: how much of our SKU one platform item is (1000 = 1 piece
-- or 1 kg).
CREATE TABLE sku_mappings (
    platform        TEXT NOT NULL,
    store_id        TEXT NOT NULL DEFAULT '',
    platform_sku    TEXT NOT NULL,
    sku             TEXT NOT NULL REFERENCES products (sku),
    per_item_milli  BIGINT NOT NULL DEFAULT 1000 CHECK (per_item_milli > 0),
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (platform, store_id, platform_sku)
);
CREATE INDEX sku_mappings_sku ON sku_mappings (sku);

-- A push about an order that has not arrived yet (a cancel before its
-- order), applied when the order comes.
CREATE TABLE channel_held (
    platform           TEXT NOT NULL,
    platform_order_id  TEXT NOT NULL,
    kind               TEXT NOT NULL,
    push_ref           TEXT NOT NULL,
    params             TEXT NOT NULL,
    received_at        BIGINT NOT NULL,
    applied_at         BIGINT,
    outcome            TEXT,
    PRIMARY KEY (platform, platform_order_id, kind, push_ref)
);

-- Calls to make to a platform, written in the transaction of the change they
-- report, delivered in id order per (platform, order_key).
CREATE TABLE outbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    platform      TEXT NOT NULL,
    order_key     TEXT NOT NULL,
    path          TEXT NOT NULL,
    params        TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('pending', 'delivering', 'delivered', 'failed')),
    attempts      BIGINT NOT NULL DEFAULT 0,
    next_at       BIGINT NOT NULL,
    last_error    TEXT,
    store_id      TEXT,
    order_id      TEXT,
    created_at    BIGINT NOT NULL,
    delivered_at  BIGINT
);
CREATE INDEX outbox_due ON outbox (state, next_at);
-- The calls not yet delivered, by key: what blocks a later call of the same key.
CREATE INDEX outbox_open ON outbox (platform, order_key, id) WHERE state <> 'delivered';
