"""spark-submit command lines for the Spark jobs, with their JARs resolved and cached.

The Avro reader and Kafka source are Maven artifacts (``infra/local/spark-pom.xml``)
resolved once into ``<cache_dir>/spark-<version>/jars`` at exactly the installed
pyspark's version, and handed to spark-submit with ``--jars``: a submit never
resolves anything over the network, and a cluster receives the same JARs.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from cosmic.errors import DependencyMissing
from cosmic.settings import Settings, child_env
from cosmic.stack import artifacts

POM = artifacts.INFRA_LOCAL / "spark-pom.xml"
JOBS_DIR = Path(__file__).resolve().parent


def pyspark_home() -> tuple[Path, str]:
    """(pyspark's folder, its version); pyspark's own bin/ finds SPARK_HOME by itself."""
    try:
        import pyspark
    except ImportError:
        raise DependencyMissing("pyspark", "pip install 'cosmic-garden[spark]' "
                                "(or run infra/local/install.sh)") from None
    return Path(pyspark.__file__).resolve().parent, pyspark.__version__


def jars(settings: Settings) -> list[Path]:
    """The Spark packages' JARs for the installed pyspark, resolved once and cached."""
    _, version = pyspark_home()
    folder = artifacts.resolve(POM, settings.cache_dir / f"spark-{version}" / "jars",
                               {"spark.version": version})
    return sorted(folder.glob("*.jar"))


def command(settings: Settings, job: str, job_args: Sequence[str], *,
            master: str | None = None, driver_memory: str | None = None,
            conf: Sequence[str] = ()) -> list[str]:
    """The spark-submit command line running ``jobs/spark/<job>.py`` with ``job_args``."""
    home, _ = pyspark_home()
    script = JOBS_DIR / f"{job}.py"
    # The venv's interpreter on both sides: it has the project's package installed.
    py = sys.executable
    cmd = [str(home / "bin" / "spark-submit"), "--master", master or settings.spark.master,
           "--name", f"cosmic-{job}",
           "--driver-memory", driver_memory or settings.spark.driver_memory,
           "--jars", ",".join(str(j) for j in jars(settings)),
           "--conf", f"spark.pyspark.python={py}",
           "--conf", f"spark.pyspark.driver.python={py}",
           "--conf", "spark.sql.session.timeZone=UTC",
           "--conf", "spark.ui.enabled=false",
           "--conf", "spark.sql.shuffle.partitions=4"]
    for c in conf:
        cmd += ["--conf", c]
    return [*cmd, str(script), *job_args]


def warehouse_args(day: str, end_day: str | None = None, source: str = "lake",
                   routes: Sequence[str] = ()) -> list[str]:
    """The warehouse job's arguments: what to build. Where comes with the settings, in
    the driver's environment (:func:`run`)."""
    args = ["--date", day, "--source", source]
    if end_day:
        args += ["--end-date", end_day]
    for pair in routes:
        args += ["--route", pair]
    return args


def run(cmd: Sequence[str], settings: Settings) -> int:
    """Run spark-submit in the foreground with ``settings`` in the driver's environment
    (client mode, the default: the driver runs here); its exit code. On a cluster
    in cluster mode, pass the same variables as ``spark.kubernetes.driverEnv.*`` or
    ``spark.yarn.appMasterEnv.*`` confs."""
    return subprocess.run(list(cmd), env=child_env(settings), check=False).returncode
