"""Java artifacts from Maven Central, resolved once with Maven and cached.

The POMs live under ``infra/local/``; the JARs land in the user's cache folder
(``settings.cache_dir``), one folder per artifact set and version, and are
reused on every later start.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from cosmic.errors import DependencyMissing, StackError

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA_LOCAL = REPO_ROOT / "infra" / "local"

_DONE_MARKER = ".complete"


def resolve(pom: Path, dest: Path, properties: dict[str, str] | None = None) -> Path:
    """Copy the runtime dependencies of ``pom`` into ``dest`` (once); return ``dest``."""
    if (dest / _DONE_MARKER).exists():
        return dest
    if not pom.exists():
        raise StackError(f"artifact POM not found: {pom} (run from a checkout of the project)")
    mvn = shutil.which("mvn")
    if mvn is None:
        raise DependencyMissing("maven", "install it with `apt-get install maven` "
                                "or run infra/local/install.sh")
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    props = [f"-D{k}={v}" for k, v in (properties or {}).items()]
    cmd = [
        mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
        f"-DoutputDirectory={tmp}", "-DincludeScope=runtime", *props,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tail = (result.stdout + result.stderr).strip().splitlines()[-15:]
        raise StackError(f"maven could not resolve {pom.name}:\n" + "\n".join(tail))
    (tmp / _DONE_MARKER).write_text(" ".join(cmd))
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest
