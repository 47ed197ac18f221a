"""Hypothesis settings profile for this project's tests: ``HYPOTHESIS_PROFILE``
(``ci`` by default, ``nightly`` for long runs); see strategies/settings.py."""

from xenstream.strategies import settings as _profiles

_profiles.load()

import os
import shutil
import tempfile
from pathlib import Path

import pytest

#: what xenstream's own temporary files and folders are called (runner work
#: folders, spill files, bench logs): none may outlive the test that made it
_OURS = "xenstream-"


@pytest.fixture(autouse=True)
def _nothing_left_in_tmp():
    """Fail a test that leaves one of xenstream's temporary folders behind.

    Each worker has its own ``TMPDIR`` (set below), so what appears there
    during a test is that test's."""
    tmp = Path(tempfile.gettempdir())
    before = {p.name for p in tmp.glob(_OURS + "*")}
    yield
    left = sorted(p.name for p in tmp.glob(_OURS + "*") if p.name not in before)
    assert not left, f"left behind in {tmp}: {', '.join(left)}"


def pytest_configure(config):
    # a private temporary folder per test process (each pytest-xdist worker
    # too), inherited by every program the tests start
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    private = Path(tempfile.mkdtemp(prefix=f"tests-{worker}-"))
    config._xenstream_tmp = (private, os.environ.get("TMPDIR"))
    os.environ["TMPDIR"] = str(private)
    tempfile.tempdir = None


def pytest_unconfigure(config):
    private, previous = getattr(config, "_xenstream_tmp", (None, None))
    if private is None:
        return
    if previous is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = previous
    tempfile.tempdir = None
    shutil.rmtree(private, ignore_errors=True)
