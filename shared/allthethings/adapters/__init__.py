"""Adapters: the real implementations of the ports (SQLite, Atlas, S3, SQS, Replicate, models, HTTP)."""
