-- 003 What Debezium captures: full row images, the heartbeat table, the publication, grants.
--
-- Captured tables get REPLICA IDENTITY FULL so that UPDATE and DELETE events carry the whole
-- before-image (CDC-06; the processors still never rely on it). The publication lists the
-- captured tables explicitly: `salesledger connect register` derives the connector's
-- table.include.list from pg_publication_tables, so the publication is the one list of what is
-- captured. The CDC role may read the captured tables and write only the heartbeat table
-- (heartbeat.action.query); the reporting role reads everything in schema sales.

CREATE TABLE sales.cdc_heartbeat (
    id       integer     PRIMARY KEY CHECK (id = 1),
    beat_at  timestamptz NOT NULL
);
INSERT INTO sales.cdc_heartbeat (id, beat_at) VALUES (1, now());

ALTER TABLE sales.branches              REPLICA IDENTITY FULL;
ALTER TABLE sales.warehouses            REPLICA IDENTITY FULL;
ALTER TABLE sales.units                 REPLICA IDENTITY FULL;
ALTER TABLE sales.customers             REPLICA IDENTITY FULL;
ALTER TABLE sales.suppliers             REPLICA IDENTITY FULL;
ALTER TABLE sales.products              REPLICA IDENTITY FULL;
ALTER TABLE sales.currency_rates        REPLICA IDENTITY FULL;
ALTER TABLE sales.invoices              REPLICA IDENTITY FULL;
ALTER TABLE sales.invoice_lines         REPLICA IDENTITY FULL;
ALTER TABLE sales.payments              REPLICA IDENTITY FULL;
ALTER TABLE sales.payment_allocations   REPLICA IDENTITY FULL;
ALTER TABLE sales.returns               REPLICA IDENTITY FULL;
ALTER TABLE sales.return_lines          REPLICA IDENTITY FULL;
ALTER TABLE sales.goods_receipts        REPLICA IDENTITY FULL;
ALTER TABLE sales.goods_receipt_lines   REPLICA IDENTITY FULL;
ALTER TABLE sales.stock_write_offs      REPLICA IDENTITY FULL;
ALTER TABLE sales.stock_write_off_lines REPLICA IDENTITY FULL;

CREATE PUBLICATION {publication} FOR TABLE
    sales.branches, sales.warehouses, sales.units, sales.customers, sales.suppliers,
    sales.products, sales.currency_rates,
    sales.invoices, sales.invoice_lines, sales.payments, sales.payment_allocations,
    sales.returns, sales.return_lines, sales.goods_receipts, sales.goods_receipt_lines,
    sales.stock_write_offs, sales.stock_write_off_lines,
    sales.cdc_heartbeat;

GRANT USAGE ON SCHEMA sales TO {cdc_role};
GRANT SELECT ON
    sales.branches, sales.warehouses, sales.units, sales.customers, sales.suppliers,
    sales.products, sales.currency_rates,
    sales.invoices, sales.invoice_lines, sales.payments, sales.payment_allocations,
    sales.returns, sales.return_lines, sales.goods_receipts, sales.goods_receipt_lines,
    sales.stock_write_offs, sales.stock_write_off_lines,
    sales.cdc_heartbeat
    TO {cdc_role};
GRANT INSERT, UPDATE ON sales.cdc_heartbeat TO {cdc_role};

GRANT USAGE ON SCHEMA sales TO {reporting_role};
GRANT SELECT ON ALL TABLES IN SCHEMA sales TO {reporting_role};
ALTER DEFAULT PRIVILEGES IN SCHEMA sales GRANT SELECT ON TABLES TO {reporting_role};
