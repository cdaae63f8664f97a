-- Barcodes printed on a product (EAN-13 or EAN-8, check digit verified by
-- the gateway, at most 8 per product). Products are chain-wide, so a
-- barcode names one SKU in every store. pos keeps the order they were given.
CREATE TABLE product_barcodes (
    barcode  TEXT PRIMARY KEY,
    sku      TEXT NOT NULL REFERENCES products (sku),
    pos      BIGINT NOT NULL
);
CREATE INDEX product_barcodes_sku ON product_barcodes (sku, pos);
