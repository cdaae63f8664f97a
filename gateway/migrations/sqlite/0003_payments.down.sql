DROP TABLE refunds;
DROP TABLE charge_exchanges;
DROP TABLE charges;
