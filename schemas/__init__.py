"""Event contracts: Avro schemas (``*.avsc``), the Confluent wire-format serde, the registry.

Reading guide: the ``.avsc`` files in this folder are the single source of
truth; :mod:`schemas.catalog` loads them and maps topics to them. Then
:mod:`schemas.serde` (the callables every producer and consumer uses),
:mod:`schemas.dlq` (where bad records go), :mod:`schemas.models` (pydantic
models of the commands APIs accept), :mod:`schemas.columnar` (packing per-body
arrays), :mod:`schemas.errors`. The registry (client, compatibility rules,
embedded server) lives in :mod:`schemas.registry`; :mod:`schemas.testing`
has an in-process registry for unit tests.
"""

from schemas.registry.client import RegistryClient
from schemas.serde import AvroDeserializer, AvroSerializer, MessageField, SerializationContext

__all__ = ["AvroDeserializer", "AvroSerializer", "MessageField", "RegistryClient", "SerializationContext"]
