DROP TABLE cash_tenders;
