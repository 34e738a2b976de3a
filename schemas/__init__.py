"""Event contracts: Avro schemas (``*.avsc``), the Confluent wire-format serde, the registry."""
