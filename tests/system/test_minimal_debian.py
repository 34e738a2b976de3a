"""install.sh on a bare Debian 12: everything the platform and its tests need is there after.

Builds a debootstrap minbase root and downloads several hundred MB, so it runs
only when asked: ``COSMIC_CHECK_MINIMAL_DEBIAN=1`` (as root, with an apt mirror).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "infra" / "local" / "check-minimal-debian.sh"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("COSMIC_CHECK_MINIMAL_DEBIAN") != "1",
                       reason="downloads a Debian root; set COSMIC_CHECK_MINIMAL_DEBIAN=1"),
]


@pytest.mark.timeout(1800)
def test_install_sh_leaves_nothing_missing_on_a_minimal_debian_12() -> None:
    r = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, check=False,
                       timeout=1800)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "MISSING" not in r.stdout
