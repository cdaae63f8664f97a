-- What a refund gives back, line by line, and whether the goods go back on
-- the shelf. Quantities in thousandths of the line's unit, money in fen.
ALTER TABLE refunds ADD COLUMN reason TEXT;
ALTER TABLE refunds ADD COLUMN restock BIGINT NOT NULL DEFAULT 0;

CREATE TABLE refund_lines (
    refund_id   TEXT NOT NULL REFERENCES refunds (id),
    line_no     BIGINT NOT NULL,
    qty_milli   BIGINT NOT NULL CHECK (qty_milli > 0),
    amount_fen  BIGINT NOT NULL CHECK (amount_fen >= 0),
    PRIMARY KEY (refund_id, line_no)
);
