-- A counter sale that already happened (sold while the gateway was away,
-- uploaded later; SubmitOrder with soldAt): never refused for stock. When the
-- counter sold it (microseconds, the store PC's clock), the catalog version
-- it priced from, and its attention flags (short_stock, price_differs,
-- unavailable_items), comma-separated like third_party_orders.attention.
CREATE TABLE counter_sales (
    order_id         TEXT PRIMARY KEY REFERENCES orders (id),
    sold_at          BIGINT NOT NULL,
    catalog_version  TEXT,
    attention        TEXT NOT NULL DEFAULT '',
    created_at       BIGINT NOT NULL
);
