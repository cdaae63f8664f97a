DROP TABLE refund_lines;
ALTER TABLE refunds DROP COLUMN restock;
ALTER TABLE refunds DROP COLUMN reason;
