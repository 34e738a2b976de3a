"""infra/local/timescaledb.sh against a stand-in PostgreSQL (a fake pg_config over temporary
folders) and stand-in release tarballs: checksum refused, failed build, a build that is
cached and installed once, and a second run that changes nothing."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "infra" / "local" / "timescaledb.sh"

# A release stand-in: ./bootstrap writes build/Makefile, whose install target puts the
# files a real `make install` puts where pg_config says.
BOOTSTRAP = """#!/bin/sh
mkdir -p build
printf 'all:\\n\\ttouch built\\ninstall:\\n\\tcp timescaledb.so timescaledb-9.9.9.so "$(PKGLIB)"/\\n\\tcp timescaledb.control "$(SHARE)"/extension/\\n' > build/Makefile
echo ok > build/timescaledb.so
echo ok > build/timescaledb-9.9.9.so
echo "default_version = '9.9.9'" > build/timescaledb.control
"""
BROKEN_BOOTSTRAP = "#!/bin/sh\necho 'CMake Error: PostgreSQL headers not usable' >&2\nexit 1\n"


class FakePostgres:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.pkglib = root / "lib"
        self.share = root / "share"
        for d in (root / "bin", self.pkglib, self.share / "extension", root / "include"):
            d.mkdir(parents=True)
        (root / "include" / "postgres.h").write_text("")
        pg_config = root / "bin" / "pg_config"
        pg_config.write_text(
            "#!/bin/sh\ncase \"$1\" in\n"
            "  --version) echo 'PostgreSQL 15.20 (stand-in)';;\n"
            f"  --pkglibdir) echo '{self.pkglib}';;\n"
            f"  --sharedir) echo '{self.share}';;\n"
            f"  --includedir-server) echo '{root / 'include'}';;\n"
            "esac\n")
        pg_config.chmod(pg_config.stat().st_mode | stat.S_IXUSR)

    def installed(self) -> list[str]:
        return sorted(p.name for p in [*self.pkglib.iterdir(),
                                       *(self.share / "extension").iterdir()])


def _tarball(path: Path, bootstrap: str) -> str:
    src = path.parent / "src" / "timescaledb-9.9.9"
    src.mkdir(parents=True)
    (src / "bootstrap").write_text(bootstrap)
    (src / "bootstrap").chmod(0o755)
    with tarfile.open(path, "w:gz") as tar:
        tar.add(src, arcname="timescaledb-9.9.9")
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def pg(tmp_path: Path) -> FakePostgres:
    return FakePostgres(tmp_path / "pg")


def _run(pg: FakePostgres, tmp_path: Path, source: Path, sha256: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COSMIC_")}
    env |= {"PATH": f"{pg.root / 'bin'}:{env['PATH']}", "COSMIC_CACHE_DIR": str(tmp_path / "cache"),
            "COSMIC_TIMESCALEDB_SOURCE": str(source), "COSMIC_TIMESCALEDB_SHA256": sha256,
            "COSMIC_TIMESCALEDB_VERSION": "9.9.9", "COSMIC_BUILD_JOBS": "1",
            # The stand-in Makefile installs where these say.
            "PKGLIB": str(pg.pkglib), "SHARE": str(pg.share)}
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_a_tarball_with_another_checksum_is_refused(pg: FakePostgres, tmp_path: Path):
    source = tmp_path / "release.tar.gz"
    real = _tarball(source, BOOTSTRAP)
    result = _run(pg, tmp_path, source, "0" * 64)
    assert result.returncode == 3
    assert f"has sha256 {real}, not {'0' * 64}" in result.stderr
    assert "native-partitioning fallback" in result.stderr
    assert pg.installed() == []


def test_a_failed_build_says_why_and_installs_nothing(pg: FakePostgres, tmp_path: Path):
    source = tmp_path / "release.tar.gz"
    sha = _tarball(source, BROKEN_BOOTSTRAP)
    result = _run(pg, tmp_path, source, sha)
    assert result.returncode == 3
    assert "CMake Error: PostgreSQL headers not usable" in result.stderr
    assert "the build failed (full log:" in result.stderr
    assert pg.installed() == []


def test_built_once_installed_and_a_second_run_changes_nothing(pg: FakePostgres, tmp_path: Path):
    source = tmp_path / "release.tar.gz"
    sha = _tarball(source, BOOTSTRAP)
    first = _run(pg, tmp_path, source, sha)
    assert first.returncode == 0, first.stderr
    assert "building 9.9.9 for PostgreSQL 15" in first.stdout
    assert "9.9.9 installed for PostgreSQL 15" in first.stdout
    assert pg.installed() == ["timescaledb-9.9.9.so", "timescaledb.control", "timescaledb.so"]
    cache = tmp_path / "cache" / "timescaledb"
    before = {p: p.stat().st_mtime_ns for p in cache.rglob("*")}

    second = _run(pg, tmp_path, source, sha)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == f"timescaledb: 9.9.9 already installed for PostgreSQL 15 ({pg.pkglib})"
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*")} == before

    # The PostgreSQL reinstalled without it: installed again from the cached build.
    for p in pg.pkglib.iterdir():
        p.unlink()
    third = _run(pg, tmp_path, source, sha)
    assert third.returncode == 0, third.stderr
    assert "building" not in third.stdout
    assert "timescaledb-9.9.9.so" in pg.installed()
