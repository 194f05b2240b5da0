"""The local stack as plain processes (no Docker): PostgreSQL, Kafka (KRaft), Kafka Connect with
Debezium, Prometheus. Backed by the files in ``deploy/local/``."""
