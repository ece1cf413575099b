"""Shared test configuration: hypothesis profiles with a fixed example budget."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# "ci" keeps the whole suite within minutes on two cores and is deterministic, so a red run
# can be reproduced; "dev" digs deeper on demand: HYPOTHESIS_PROFILE=dev pytest.
settings.register_profile(
    "ci",
    max_examples=60,
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
