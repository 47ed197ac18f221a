"""What the testees that run Xen's own code need from this machine.

The libxenguest and xenstored testees run Debian's Xen binaries and libraries
under LD_PRELOAD shims of our own, compiled at test time:

* :class:`Release` finds a Xen release that ``scripts/fetch-xen-tools``
  unpacked (``.cache/xen-tools/<release>``, or ``$XEN_TOOLS_DIR``): its
  ``env`` file names the headers, the libraries, the dynamic loader;
* :func:`build` compiles C sources with ``cc`` (or ``$CC``) into the cache
  (``$XENSTREAM_CACHE``, default ``.cache/xenstream`` under the current
  directory), one folder per build, named by a hash of the sources, the
  compiler's version and its command lines: a changed source, compiler or
  release builds anew, an unchanged one is reused.  A build is made in a
  temporary folder and renamed: concurrent workers never see half of one,
  and an interrupted build leaves nothing.

What is missing (no ``cc``, a release not fetched, a source that does not
compile) is :class:`Unavailable`, with one line that says what and how to
get it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

#: The release a testee uses when none is named.
DEFAULT_RELEASE = "4.17"
#: The placeholder for the output folder in the command lines a build is keyed by.
_OUT = Path("@OUT@")


class Unavailable(Exception):
    """What a testee needs is not on this machine (one line saying what)."""


def tools_dir() -> Path:
    """``$XEN_TOOLS_DIR`` or ``.cache/xen-tools`` (relative to the working directory)."""
    return Path(os.environ.get("XEN_TOOLS_DIR") or ".cache/xen-tools")


def cache_dir() -> Path:
    """``$XENSTREAM_CACHE`` or ``.cache/xenstream``, absolute."""
    return Path(os.environ.get("XENSTREAM_CACHE") or ".cache/xenstream").absolute()


def read_env(path: Path) -> dict[str, str]:
    """The ``NAME=value`` lines of a release's ``env`` file."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


@dataclass(frozen=True)
class Release:
    """One Xen release's unpacked packages."""

    directory: Path
    name: str              # 4.17
    include: Path
    libdir: Path
    loader: str            # empty: the system's loader
    library_path: str

    @classmethod
    def locate(cls, where: str | os.PathLike | None = None, *,
               needs: Sequence[str] = ()) -> "Release":
        """``where``: a release directory, its ``env`` file, a release name
        (``4.17``, looked up in :func:`tools_dir`), or None for
        :data:`DEFAULT_RELEASE`.  ``needs``: files that must be there, as
        paths relative to the release's include or library folder
        (``include/xenguest.h``, ``lib/libxenguest.so``)."""
        if where is None or str(where) in ("", "builtin"):
            where = DEFAULT_RELEASE
        p = Path(where)
        if not p.exists() and "/" not in str(where):
            p = tools_dir() / str(where)
        if p.is_file() and p.name == "env":
            p = p.parent
        env_file = p / "env"
        if not env_file.is_file():
            raise Unavailable(f"{p}: no Xen release here (expected {env_file}, made by "
                              "scripts/fetch-xen-tools)")
        env = read_env(env_file)
        try:
            rel = cls(p.resolve(), env.get("XEN_RELEASE", p.name), Path(env["XEN_INCLUDE"]),
                      Path(env["XEN_LIBDIR"]), env.get("XEN_LOADER", ""),
                      env.get("XEN_LIBRARY_PATH", env["XEN_LIBDIR"]))
        except KeyError as exc:
            raise Unavailable(f"{env_file}: no {exc.args[0]}") from None
        for need in needs:
            folder, _, name = need.partition("/")
            path = (rel.include if folder == "include" else rel.libdir) / name
            if not path.exists():
                raise Unavailable(f"{path} is missing: the release's packages are not all "
                                  "unpacked (scripts/fetch-xen-tools)")
        return rel


def compiler(purpose: str) -> str:
    """The C compiler's path (``$CC`` or ``cc``); ``purpose`` says what it is for."""
    cc = os.environ.get("CC") or "cc"
    path = shutil.which(cc)
    if path is None:
        raise Unavailable(f"no C compiler: {cc!r} is not on PATH ({purpose} is compiled at test "
                          "time; install gcc or set CC)")
    return path


def _version(cc: str) -> bytes:
    try:
        return subprocess.run([cc, "--version"], capture_output=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise Unavailable(f"{cc} --version failed: {exc}") from None


def build(name: str, sources: Sequence[Path], commands: Callable[[Path], list[list[str]]],
          products: Sequence[str], *, dest: Path | None = None) -> Path:
    """The folder holding ``products`` built from ``sources`` by ``commands``
    (the command lines that write into the folder they are given), building
    it first when the cache has no such build."""
    for src in sources:
        if not src.is_file():
            raise Unavailable(f"{src} is missing from the installed package")
    key = hashlib.sha256()
    for src in sources:
        key.update(src.read_bytes() + b"\0")
    lines = commands(_OUT)
    key.update(_version(lines[0][0]) + b"\0" + repr(lines).encode())
    base = Path(dest) if dest is not None else cache_dir()
    folder = base / f"{name}-{key.hexdigest()[:16]}"
    if all((folder / p).is_file() for p in products):
        return folder
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=base))
    try:
        for cmd in commands(tmp):
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                errors = [ln for ln in r.stderr.splitlines() if "error" in ln] or \
                    r.stderr.strip().splitlines() or ["(no message)"]
                made = next((w for w in cmd if w.startswith(str(tmp))), cmd[-1])
                raise Unavailable(f"{os.path.basename(cmd[0])} could not build "
                                  f"{os.path.basename(made)}: {errors[0].strip()}")
        try:
            os.replace(tmp, folder)
        except OSError:
            if not all((folder / p).is_file() for p in products):
                raise   # not another process's finished build: a real failure
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
