"""Hypothesis profiles for the property suites.

Every test sets its own `max_examples`, sized so the whole directory runs in well under a
minute on two cores. `deadline=None` everywhere: the first call of a decoder pays imports and
caches, and a shared CI machine has noisy timings, neither of which is a property failure.

    dev (default)  random inputs each run, no example database written into the work tree
    ci             derandomized: the same inputs on every run, so CI cannot flake

Choose with HYPOTHESIS_PROFILE=ci (this conftest loads after hypothesis reads its own
--hypothesis-profile option, so the environment variable is the switch that always works);
CI (which sets CI=true) gets the ci profile without asking.
"""
from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = dict(
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)

settings.register_profile("dev", **_COMMON)
settings.register_profile("ci", derandomize=True, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))
