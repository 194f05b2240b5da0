"""salesledger: sales-database change data capture turned into accounting, as it happens.

Layers (each may import only the ones before it):

- ``ledger``  — the pure posting engine (model, charts, rules, valuation, receivables);
  imports no Kafka, Faust or psycopg.
- ``streams`` — Faust processors: CDC decoding, document assembly, posting, dead letters.
- ``sinks``   — writers into the accounting store (PostgreSQL).
- ``stack``   — the local no-Docker stack (PostgreSQL, Kafka KRaft, Kafka Connect + Debezium,
  Prometheus) as plain processes.
- ``cli``     — the ``salesledger`` command.
"""

__version__ = "0.1.0"
