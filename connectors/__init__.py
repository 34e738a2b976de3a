"""Sinks and sources between Kafka and the stores: TimescaleDB, ClickHouse, the archive lake."""
