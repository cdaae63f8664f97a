DROP TABLE product_barcodes;
