"""Real sales data for salesledger: dataset readers, the seeded model, the sales-DB writers.

Layer map (what each module holds and may import):

- :mod:`salesledger.datasets.online_retail` — the UCI "Online Retail" CSV read as exact
  ``Decimal`` values, its classification rules (service lines, walk-in customers, stock
  adjustments) and the matching of cancellation lines (``C…``) to earlier invoices. Pure.
- :mod:`salesledger.datasets.northwind` — the Northwind dump (orders, exact decimals from
  ``real``) planned the same way. Pure.
- :mod:`salesledger.datasets.pagila` — the Pagila dump (rentals as service invoices, its real
  payments). Pure.
- :mod:`salesledger.datasets.model` — the seeded generative model for what the dataset lacks
  (unit costs, opening stock, goods receipts, payers and payment terms, edits and duplicate
  entries). Pure; same seed, same output.
- :mod:`salesledger.datasets.plan` — the master data and the timeline of sales-program steps
  (insert draft, post, edit, cancel, pay, dead letter) for one slice of the dataset. Pure.
- :mod:`salesledger.datasets.store` — writes master data and opening balances into the sales
  database (idempotent upserts) and keeps salesledger's own bookkeeping of loads, opening stock
  and dead letters in the schema ``salesledger_data`` (never captured). Imports psycopg.

The pure modules never import psycopg, Kafka or Faust; :mod:`salesledger.simulation` and the CLI
import them, not the other way round.
"""

from pathlib import Path

DATASETS = ("online-retail", "northwind", "pagila")
#: Dataset files shipped in the package (licence notes in ``data/README.md``).
BUNDLED = {"online-retail": "online_retail_2011-02.csv.gz"}


def bundled_path(dataset: str) -> Path:
    """The shipped copy of ``dataset`` (``online-retail``: February 2011 of UCI Online Retail,
    CC BY 4.0).

    Raises:
        LookupError: no copy of ``dataset`` is shipped.
        FileNotFoundError: the package was installed without its data file.
    """
    if dataset not in BUNDLED:
        raise LookupError(f"no bundled copy of {dataset!r}; give --path")
    path = Path(__file__).resolve().parent / "data" / BUNDLED[dataset]
    if not path.is_file():
        raise FileNotFoundError(path)
    return path
