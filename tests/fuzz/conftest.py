"""Fuzzing profiles: a few hundred inputs per ingress in every run, 10,000 with
``COSMIC_FUZZ=full`` (``cosmic`` CI runs the short one)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("fuzz-short", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz-full", max_examples=10_000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
PROFILE = "fuzz-full" if os.environ.get("COSMIC_FUZZ") == "full" else "fuzz-short"
