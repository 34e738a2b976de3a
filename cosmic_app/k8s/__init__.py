"""The deployment as code: Kubernetes manifests rendered from the settings.

Start at :func:`render` (:mod:`cosmic_app.k8s.render`): it takes the settings, a
:class:`Values` file (how big, where) and the ACL table, and returns every
manifest. Then, by what they build: :mod:`.kafka` (Strimzi: the cluster, one
KafkaTopic per registered topic, one KafkaUser per identity), :mod:`.workloads`
(workers, gateways, Faust apps, connectors; their autoscaling and disruption
budgets), :mod:`.jobs` (the Flink and Spark operators' resources). :mod:`.validate`
checks manifests offline against the schemas vendored in ``infra/k8s/schemas/``.
``cosmic k8s render`` is the command; ``docs/deployment.md`` the guide.
"""

from cosmic_app.k8s.render import render, to_yaml, write
from cosmic_app.k8s.validate import ManifestInvalid, check
from cosmic_app.k8s.values import Values, load_values

__all__ = ["ManifestInvalid", "Values", "check", "load_values", "render", "to_yaml", "write"]
