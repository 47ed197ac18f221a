"""Hypothesis settings profiles for this project's tests.

``ci`` (the default): modest example counts, no deadline (a stream of a few
pages takes milliseconds, but CI machines stall).  ``nightly``: many more
examples.  ``tests/conftest.py`` loads the one named by ``HYPOTHESIS_PROFILE``.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", max_examples=25, deadline=None)
settings.register_profile("nightly", max_examples=1000, deadline=None)
settings.register_profile("dev", max_examples=10, deadline=None)


def load(name: str | None = None) -> str:
    name = name or os.environ.get("HYPOTHESIS_PROFILE", "ci")
    settings.load_profile(name)
    return name
