"""Finding Debian's Xen packages for the tests that compile against their
headers or run their libraries (shared by several test modules).

A release's tree is ``$XEN_TOOLS_DIR/<release>`` or ``.cache/xen-tools/<release>``
(made by ``scripts/fetch-xen-tools``); when neither exists the tree is fetched
once, as the other tests of Debian's tools do.  A test that needs it is
skipped with one line saying why only when the packages cannot be had or
``cc`` is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def tools_dir() -> Path:
    return Path(os.environ.get("XEN_TOOLS_DIR") or ROOT / ".cache" / "xen-tools")


def release_dir(release: str = "4.17", *, fetch: bool = True) -> Path:
    """The unpacked tree of ``release`` (fetching it if needed), or a skip."""
    base = tools_dir()
    rel = base / release
    if not (rel / "env").is_file() and fetch:
        script = ROOT / "scripts" / "fetch-xen-tools"
        r = subprocess.run([sys.executable, str(script), "--release", release, str(base)],
                           capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            pytest.skip(f"Xen {release} packages could not be fetched: {r.stderr.strip()[-200:]}")
    if not (rel / "env").is_file():
        pytest.skip(f"Xen {release} packages are not in {base} (run scripts/fetch-xen-tools)")
    return rel


def need_cc() -> str:
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        pytest.skip("no C compiler (cc) on PATH")
    return cc


def read_env(rel: Path) -> dict[str, str]:
    from xenstream.conformance.native import read_env as read

    return read(rel / "env")
