"""Building the fake hypervisor (``fakexen.c``) that xenstored runs under.

The C source ships with the package; it is compiled on first use with the
machine's ``cc`` into a cache folder (``$XENSTREAM_CACHE``, default
``.cache/xenstream`` under the current directory) as
``fakexen-<hash>.so``, the hash covering the source and the compiler's
version, so that a changed source or compiler builds a new one.  The build
writes a temporary file and renames it: concurrent workers never see half a
library.  :class:`Unavailable` says in one line why it cannot be built.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("fakexen.c")
CFLAGS = ["-shared", "-fPIC", "-O2", "-Wall"]


class Unavailable(Exception):
    """The fake hypervisor cannot be built here (no cc, no source, a compile error)."""


def cache_dir() -> Path:
    return Path(os.environ.get("XENSTREAM_CACHE") or ".cache/xenstream").absolute()


def compiler() -> str:
    cc = os.environ.get("CC") or "cc"
    path = shutil.which(cc)
    if path is None:
        raise Unavailable(f"no C compiler: {cc!r} is not on PATH (the xenstored testee's fake "
                          "hypervisor, fakexen.c, is compiled at test time; install gcc or set CC)")
    return path


def build(dest: Path | None = None) -> Path:
    """The path of the built library, compiling it first when needed."""
    if not SOURCE.is_file():
        raise Unavailable(f"{SOURCE} is missing from the installed package")
    cc = compiler()
    source = SOURCE.read_bytes()
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise Unavailable(f"{cc} --version failed: {exc}") from None
    digest = hashlib.sha256(source + b"\0" + version + b"\0" + " ".join(CFLAGS).encode()).hexdigest()[:16]
    folder = Path(dest) if dest is not None else cache_dir()
    lib = folder / f"fakexen-{digest}.so"
    if lib.is_file():
        return lib
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".fakexen-", suffix=".so", dir=folder)
    os.close(fd)
    try:
        proc = subprocess.run([cc, *CFLAGS, "-o", tmp, str(SOURCE)], capture_output=True,
                              text=True, timeout=120)
        if proc.returncode != 0:
            first = (proc.stderr.strip().splitlines() or ["(no message)"])[0]
            raise Unavailable(f"{cc} could not build {SOURCE.name}: {first}")
        os.replace(tmp, lib)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return lib
