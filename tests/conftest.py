"""Hypothesis profiles. The test command runs "ci": derandomized, so a run is reproducible and CI never
fails on an example no one has seen before. "explore" searches afresh with more examples:

    HYPOTHESIS_PROFILE=explore ./deploy/test.sh tests/unit tests/security
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("explore", max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
