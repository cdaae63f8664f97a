DROP TABLE counter_sales;
