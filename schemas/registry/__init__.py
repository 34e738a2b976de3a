"""A Confluent-compatible schema registry: client, rules and an embedded server.

Reading guide: :mod:`.compatibility` (Avro resolution rules and the modes),
:mod:`.core` (subjects, versions, ids over a :mod:`.store`), :mod:`.server`
(the REST API over HTTP), :mod:`.client` (what the serde and the CLI use;
works against any Confluent-compatible registry), :mod:`.kafka_store`
(persistence in the compacted ``_schemas`` topic).
"""

from schemas.registry.client import RegistryClient
from schemas.registry.compatibility import Compatibility, ParsedSchema

__all__ = ["Compatibility", "ParsedSchema", "RegistryClient"]
