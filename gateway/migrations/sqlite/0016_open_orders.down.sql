DROP INDEX third_party_orders_alerted;
DROP INDEX orders_open;
