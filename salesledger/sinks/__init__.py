"""Sink workers writing into the accounting store (PostgreSQL). May import ``ledger``."""
