"""``cosmic k8s render``: the Kubernetes manifests of a deployment, from the settings."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cosmic import acls
from cosmic.errors import DependencyMissing
from cosmic.settings import Settings, get_settings

if TYPE_CHECKING:  # the package needs the k8s extra; `cosmic --help` must not
    from cosmic_app.k8s.kafka import Identity


def acl_table(settings: Settings) -> Sequence[Identity]:
    """The security model's identities (cosmic/acls.py), for the KafkaUsers and each
    pod's Kafka user: the cluster grants what the local stack grants."""
    return acls.identities(settings)


@click.group("k8s")
def k8s() -> None:
    """Kubernetes: Strimzi Kafka, the Flink and Spark operators, the platform's services."""


@k8s.command()
@click.option("--values", "values_file", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="YAML values: namespace, image, replicas, resources, "
                                 "storage (infra/k8s/values-small.yaml) [default: built-in].")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              default=None, help="Write one file per resource here instead of printing.")
def render(values_file: Path | None, out_dir: Path | None) -> None:
    """Render every manifest, check each against the vendored schemas, print or write them.

    Nothing is applied: pipe to ``kubectl apply -f -`` or apply the folder.
    """
    try:
        from cosmic_app import k8s as kube
    except ModuleNotFoundError as exc:
        raise DependencyMissing(str(exc.name), "pip install 'cosmic-garden[k8s]'") from None

    settings = get_settings()
    values = kube.load_values(values_file)
    manifests = kube.render(settings, values, acl_table(settings))
    kube.check(manifests)
    if out_dir is None:
        click.echo(kube.to_yaml(manifests), nl=False)
        return
    paths = kube.write(manifests, out_dir)
    click.echo(f"wrote {len(paths)} manifests to {out_dir}")
