"""Sink workers writing the posting engine's output into the accounting store (PostgreSQL).

May import ``salesledger.ledger`` (the model), ``salesledger.streams`` (serde, dead letters) and
``salesledger.config``; nothing imports the sinks except the CLI and the supervisor.

Modules, in the order a record travels:

- ``decode``    Kafka bytes -> :class:`records.LedgerRecord` (the one place to swap the format);
- ``records``   ledger facts + Kafka position -> rows of the store's tables (natural keys);
- ``writer``    one batch -> one transaction (rows + consumer offsets), bisect to dead letters;
- ``worker``    the consumer loop: seek to stored offsets, batch, write, then commit to Kafka;
- ``migrate``   the store's numbered migrations (``deploy/sql/accounting``);
- ``canonical`` / ``audit``  canonical text, ``ledger-hash`` and ``ledger check``;
- ``settings``  ``SALESLEDGER_SINK_*``; ``metrics``  Prometheus counters and histograms.
"""
