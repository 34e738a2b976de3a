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
printf 'all:\\n\\ttouch built\\ninstall:\\n\\tmkdir -p "$(DESTDIR)$(PKGLIB)" "$(DESTDIR)$(SHARE)/extension"\\n\\tcp timescaledb.so timescaledb-9.9.9.so "$(DESTDIR)$(PKGLIB)"/\\n\\tcp timescaledb.control "$(DESTDIR)$(SHARE)"/extension/\\n' > build/Makefile
echo ok > build/timescaledb.so
echo ok > build/timescaledb-9.9.9.so
echo "default_version = '9.9.9'" > build/timescaledb.control
"""
# A patch of the stand-in source, as infra/local/timescaledb-patches/ holds for the real one.
PATCH = """--- a/bootstrap
+++ b/bootstrap
@@ -3,3 +3,3 @@
 printf PLACEHOLDER
-echo ok > build/timescaledb.so
+echo patched > build/timescaledb.so
 echo ok > build/timescaledb-9.9.9.so
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


def _patches(tmp_path: Path, *texts: str) -> Path:
    folder = tmp_path / "patches"
    folder.mkdir(exist_ok=True)
    for i, text in enumerate(texts):
        bootstrap_line = BOOTSTRAP.splitlines()[2]
        (folder / f"{i:04d}-stand-in.patch").write_text(text.replace("printf PLACEHOLDER",
                                                                     bootstrap_line))
    return folder


def _run(pg: FakePostgres, tmp_path: Path, source: Path, sha256: str,
         patches: Path | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COSMIC_")}
    env |= {"PATH": f"{pg.root / 'bin'}:{env['PATH']}", "COSMIC_CACHE_DIR": str(tmp_path / "cache"),
            "COSMIC_TIMESCALEDB_PATCHES": str(patches or _patches(tmp_path)), **extra,
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


def test_a_patch_that_does_not_apply_stops_the_build(pg: FakePostgres, tmp_path: Path):
    source = tmp_path / "release.tar.gz"
    sha = _tarball(source, BOOTSTRAP)
    stale = PATCH.replace("-echo ok > build/timescaledb.so", "-echo other > build/timescaledb.so")
    result = _run(pg, tmp_path, source, sha, _patches(tmp_path, stale))
    assert result.returncode == 3
    assert "patch 0000-stand-in.patch does not apply to 9.9.9" in result.stderr
    assert pg.installed() == []


def test_built_once_patched_installed_and_a_second_run_changes_nothing(pg: FakePostgres,
                                                                       tmp_path: Path):
    source = tmp_path / "release.tar.gz"
    sha = _tarball(source, BOOTSTRAP)
    patches = _patches(tmp_path, PATCH)
    first = _run(pg, tmp_path, source, sha, patches)
    assert first.returncode == 0, first.stderr
    assert "building 9.9.9 for PostgreSQL 15" in first.stdout
    assert "applied 0000-stand-in.patch" in first.stdout
    assert "installed for PostgreSQL 15" in first.stdout
    assert pg.installed() == ["timescaledb-9.9.9.so", "timescaledb.control",
                              "timescaledb.cosmic-build", "timescaledb.so"]
    assert (pg.pkglib / "timescaledb.so").read_text() == "patched\n"
    build_id = (pg.share / "extension" / "timescaledb.cosmic-build").read_text().strip()
    assert build_id.startswith("9.9.9+")
    cache = tmp_path / "cache" / "timescaledb"
    before = {p: p.stat().st_mtime_ns for p in cache.rglob("*")}
    installed = {p: p.stat().st_ino for p in pg.pkglib.iterdir()}

    second = _run(pg, tmp_path, source, sha, patches)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == (f"timescaledb: 9.9.9 already installed for PostgreSQL 15 "
                                     f"({pg.pkglib})")
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*")} == before
    assert {p: p.stat().st_ino for p in pg.pkglib.iterdir()} == installed

    # The PostgreSQL reinstalled without it: installed again from the cached build.
    for p in pg.pkglib.iterdir():
        p.unlink()
    third = _run(pg, tmp_path, source, sha, patches)
    assert third.returncode == 0, third.stderr
    assert "building" not in third.stdout
    assert "timescaledb-9.9.9.so" in pg.installed()


def test_a_timescaledb_installed_otherwise_is_left_alone(pg: FakePostgres, tmp_path: Path):
    (pg.share / "extension" / "timescaledb.control").write_text("default_version = '2.1.0'\n")
    for name in ("timescaledb.so", "timescaledb-2.1.0.so"):
        (pg.pkglib / name).write_text("theirs\n")
    source = tmp_path / "release.tar.gz"
    result = _run(pg, tmp_path, source, _tarball(source, BOOTSTRAP))
    assert result.returncode == 0, result.stderr
    assert "2.1.0 already installed for PostgreSQL 15" in result.stdout
    assert "not by this script: left as it is" in result.stdout
    assert (pg.pkglib / "timescaledb.so").read_text() == "theirs\n"
    forced = _run(pg, tmp_path, source, hashlib.sha256(source.read_bytes()).hexdigest(),
                  COSMIC_TIMESCALEDB_FORCE="1")
    assert forced.returncode == 0, forced.stderr
    assert (pg.pkglib / "timescaledb.so").read_text() == "ok\n"
