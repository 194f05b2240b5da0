-- 003: the subledgers written next to the journal: stock movements, receivable items, advances.
-- All append-only and signed: the balance of an item is the sum of its rows.

-- The document version that caused a row is its "by" reference: by_type, by_id, by_number,
-- by_version (the DocumentRef of the posting engine), plus the source LSN of that version.

-- Stock ledger: one row per movement of a SKU in a warehouse. quantity > 0 is an inflow
-- (receipt, return, restored issue), < 0 an outflow; value is the movement's cost (same sign),
-- so the sum of value per SKU and warehouse is the stock value (= the inventory account).
CREATE TABLE stock_ledger (
    movement_id       text PRIMARY KEY CHECK (movement_id <> ''),
    kind              text NOT NULL CHECK (kind <> ''),
    accounting_date   date NOT NULL,
    sku               text NOT NULL,
    warehouse         text NOT NULL,
    quantity          numeric NOT NULL CHECK (scale(quantity) <= 6),
    value             numeric NOT NULL CHECK (scale(value) <= 4),
    currency          text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    by_type           text NOT NULL,
    by_id             text NOT NULL,
    by_number         text NOT NULL,
    by_version        bigint NOT NULL,
    source_lsn        bigint,
    ingested_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stock_ledger_sku_warehouse ON stock_ledger (sku, warehouse);

-- Receivable items: amount > 0 raises what the customer owes on an open item (an invoice
-- number), < 0 settles it (payment allocation, return, advance offset). Open amount of a
-- document = sum(amount). item_id is derived by the sink from the row's content (see
-- salesledger/sinks/records.py).
CREATE TABLE receivable_items (
    item_id           text PRIMARY KEY CHECK (item_id <> ''),
    kind              text NOT NULL CHECK (kind <> ''),
    customer          text NOT NULL,
    document_number   text NOT NULL,      -- the open item (invoice number)
    accounting_date   date NOT NULL,
    due_date          date,
    amount            numeric NOT NULL CHECK (scale(amount) <= 4),
    currency          text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    by_type           text NOT NULL,
    by_id             text NOT NULL,
    by_number         text NOT NULL,
    by_version        bigint NOT NULL,
    source_lsn        bigint,
    ingested_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX receivable_items_customer ON receivable_items (customer, document_number);

-- Advances: amount > 0 is money received ahead of an invoice (by the payment document_number),
-- < 0 its use (advance offset).
CREATE TABLE advances (
    advance_id        text PRIMARY KEY CHECK (advance_id <> ''),
    kind              text NOT NULL CHECK (kind <> ''),
    customer          text NOT NULL,
    document_number   text NOT NULL,      -- the payment whose advance this is
    accounting_date   date NOT NULL,
    amount            numeric NOT NULL CHECK (scale(amount) <= 4),
    currency          text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    by_type           text NOT NULL,
    by_id             text NOT NULL,
    by_number         text NOT NULL,
    by_version        bigint NOT NULL,
    source_lsn        bigint,
    ingested_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX advances_customer ON advances (customer);

CREATE TRIGGER stock_ledger_append_only BEFORE UPDATE OR DELETE ON stock_ledger
    FOR EACH ROW EXECUTE FUNCTION reject_change();
CREATE TRIGGER receivable_items_append_only BEFORE UPDATE OR DELETE ON receivable_items
    FOR EACH ROW EXECUTE FUNCTION reject_change();
CREATE TRIGGER advances_append_only BEFORE UPDATE OR DELETE ON advances
    FOR EACH ROW EXECUTE FUNCTION reject_change();

-- Default privileges of the stack may have granted more: start from nothing.
REVOKE ALL ON advances, receivable_items, stock_ledger FROM PUBLIC, :"writer_role", :"reporting_role";
GRANT SELECT, INSERT ON stock_ledger, receivable_items, advances TO :"writer_role";
GRANT SELECT ON stock_ledger, receivable_items, advances TO :"reporting_role";
