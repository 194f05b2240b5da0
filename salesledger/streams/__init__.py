"""Faust processors and the CDC decoding they use. May import ``salesledger.ledger``."""
