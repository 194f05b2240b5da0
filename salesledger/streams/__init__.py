"""Faust processors and the CDC decoding they use. May import ``salesledger.ledger``.

Data flow (one module per step; pure modules import no Kafka client):

- ``cdc`` (pure) — Debezium records -> change events, transaction markers, tombstones;
- ``assembly`` (pure) — change events -> whole document versions in commit order;
- ``documents`` (pure) — the documents topic's records (document events, period actions);
- ``serde`` / ``deadletter`` (pure) — Avro of our records; dead letters and their headers;
- ``local_state`` — the assembler's per-document state on local disk (RocksDB, bounded caches);
- ``assembly_agent`` — Faust agent: CDC topics -> documents topic (assembler rebuilt on start);
- ``posting`` (pure) / ``state_store`` (pure) / ``metrics_window`` (pure) — one posting step,
  the crash-safe state table (read through per key: the state is on disk), per-minute
  business aggregates;
- ``posting_agent`` — Faust agent: documents topic -> ledger, held, control, metrics topics;
- ``app`` — Faust app factory and ``PipelineSettings``; ``worker`` — a worker process's entry;
  ``telemetry`` — Prometheus metrics of the stream workers.
"""
