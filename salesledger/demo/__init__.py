"""``salesledger demo``: the stack, real sales replayed as live traffic, the books as they fill.

- :mod:`salesledger.demo.settings` — the one demo settings file (``deploy/demo.yaml``) and the
  record of the pipeline's chart and ledger settings that the audit replay reuses;
- :mod:`salesledger.demo.orchestrate` — the steps from ``stack up`` to the final reports;
- :mod:`salesledger.demo.live` — the live view (stage counters and rates from Kafka offsets and
  the store, business figures from the report queries).
"""
