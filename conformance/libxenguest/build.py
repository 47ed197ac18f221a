"""Finding a Xen release's packages and building the shim and the driver for it.

A *release directory* is what ``scripts/fetch-xen-tools`` makes per release
(``.cache/xen-tools/4.17``): ``root/`` (the unpacked Debian packages) and
``env`` (``XEN_INCLUDE``, ``XEN_LIBDIR``, ``XEN_LOADER``, ``XEN_LIBRARY_PATH``).
:func:`build` compiles, with ``cc``, ``fakexen.c`` into ``fakexen.so`` and
``restore.c`` into ``xenstream-restore`` against that release's headers and
libraries, into ``<release dir>/xenstream-libxenguest-<hash>/``, the hash
covering the sources, the compiler and the release's paths (a changed source
builds anew; an unchanged one is reused).  The driver is linked with
``-Wl,--disable-new-dtags`` so that its run path also serves the libraries'
own dependencies, and, for a release that runs with its own C library (4.20,
from Debian 13), with that release's dynamic loader as its interpreter.
Everything is written to a temporary folder and renamed: an interrupted build
leaves nothing half-made.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = ("fakexen.c", "restore.c")
SHIM, DRIVER = "fakexen.so", "xenstream-restore"
DEFAULT_RELEASE = "4.17"


class BuildError(Exception):
    """The packages are missing or the sources do not build (one line)."""


def tools_dir() -> Path:
    """``$XEN_TOOLS_DIR`` or ``.cache/xen-tools`` (relative to the working directory)."""
    return Path(os.environ.get("XEN_TOOLS_DIR") or ".cache/xen-tools")


def read_env(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


@dataclass(frozen=True)
class Release:
    """One release's unpacked packages."""

    directory: Path
    name: str              # 4.17
    include: Path
    libdir: Path
    loader: str            # empty: the system's loader
    library_path: str

    @classmethod
    def locate(cls, where: str | os.PathLike | None = None) -> "Release":
        """``where``: a release directory, its ``env`` file, a release name
        (``4.17``, looked up in :func:`tools_dir`), or None for 4.17."""
        if where is None or str(where) in ("", "builtin"):
            where = DEFAULT_RELEASE
        p = Path(where)
        if not p.exists() and "/" not in str(where):
            p = tools_dir() / str(where)
        if p.is_file() and p.name == "env":
            p = p.parent
        env_file = p / "env"
        if not env_file.is_file():
            raise BuildError(f"{p}: no Xen release here (expected {env_file}, made by "
                             "scripts/fetch-xen-tools)")
        env = read_env(env_file)
        try:
            rel = cls(p.resolve(), env.get("XEN_RELEASE", p.name), Path(env["XEN_INCLUDE"]),
                      Path(env["XEN_LIBDIR"]), env.get("XEN_LOADER", ""),
                      env.get("XEN_LIBRARY_PATH", env["XEN_LIBDIR"]))
        except KeyError as exc:
            raise BuildError(f"{env_file}: no {exc.args[0]}") from None
        for need in (rel.include / "xenguest.h", rel.libdir / "libxenguest.so"):
            if not need.exists():
                raise BuildError(f"{need} is missing: the release's libxenmisc/libxen-dev "
                                 "packages are not unpacked")
        return rel


@dataclass(frozen=True)
class Built:
    release: Release
    shim: Path
    driver: Path


def compiler() -> str:
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        raise BuildError("no C compiler (cc) on PATH: the libxenguest testee is built at test time")
    return cc


def _key(rel: Release, cc: str) -> str:
    h = hashlib.sha256()
    for name in SOURCES:
        h.update((HERE / name).read_bytes())
    h.update(f"{cc}|{rel.include}|{rel.libdir}|{rel.loader}|{rel.library_path}".encode())
    return h.hexdigest()[:12]


def commands(rel: Release, cc: str, out: Path) -> list[list[str]]:
    """The compiler command lines (shown when a build fails)."""
    shim = [cc, "-shared", "-fPIC", "-O1", "-g", "-Wall", "-I", str(rel.include),
            str(HERE / "fakexen.c"), "-o", str(out / SHIM)]
    rpath = rel.library_path
    driver = [cc, "-O1", "-g", "-Wall", "-I", str(rel.include), str(HERE / "restore.c"),
              "-o", str(out / DRIVER), "-L", str(rel.libdir),
              f"-Wl,-rpath,{rpath}", f"-Wl,-rpath-link,{rpath}", "-Wl,--disable-new-dtags",
              "-lxenguest", "-lxenctrl", "-lxentoollog", "-ldl"]
    if rel.loader:
        # the release's own C library is newer than the build machine's: let
        # the libraries' references to it be resolved at run time, by it
        driver += [f"-Wl,--dynamic-linker={rel.loader}", "-Wl,--allow-shlib-undefined"]
    return [shim, driver]


def build(where=None) -> Built:
    """Build (or reuse) the shim and driver for the release at ``where``."""
    rel = Release.locate(where)
    cc = compiler()
    dest = rel.directory / f"xenstream-libxenguest-{_key(rel, cc)}"
    if (dest / SHIM).is_file() and (dest / DRIVER).is_file():
        return Built(rel, dest / SHIM, dest / DRIVER)
    tmp = Path(tempfile.mkdtemp(prefix=".xenstream-build-", dir=rel.directory))
    try:
        for name, cmd in zip((SHIM, DRIVER), commands(rel, cc, tmp)):
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                errors = [ln for ln in r.stderr.splitlines() if "error" in ln] or \
                    r.stderr.strip().splitlines() or ["(no output)"]
                raise BuildError(f"building {name} for Xen {rel.name} failed: {errors[0].strip()}")
        try:
            os.replace(tmp, dest)
        except OSError:
            if not (dest / DRIVER).is_file():   # another process won the race: use its build
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Built(rel, dest / SHIM, dest / DRIVER)
