"""The pure posting engine: document model, charts of accounts, posting rules, valuation,
receivables. Imports nothing of Kafka, Faust or psycopg (a test enforces it)."""
