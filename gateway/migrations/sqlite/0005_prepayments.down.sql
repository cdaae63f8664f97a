DROP TABLE prepayments;
