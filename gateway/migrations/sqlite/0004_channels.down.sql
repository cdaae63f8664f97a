DROP TABLE outbox;
DROP TABLE channel_held;
DROP TABLE sku_mappings;
DROP TABLE third_party_orders;
DROP TABLE channel_stores;
DROP TABLE channel_inbox;
