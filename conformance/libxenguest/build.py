"""Building the libxenguest testee for one Xen release: the shim and the driver.

A *release directory* is what ``scripts/fetch-xen-tools`` makes per release
(``.cache/xen-tools/4.17``; see :class:`..native.Release`).  :func:`build`
compiles, with ``cc``, ``fake_hypercalls.c`` (the fake hypervisor below
libxenctrl: libxencall's hypercalls and libxenforeignmemory's mappings) into
``fake_hypercalls.so`` and ``restore.c`` into ``xenstream-restore`` against
that release's headers and libraries, into the cache (:func:`..native.build`:
a changed source, compiler or release builds anew).  The driver is linked
with ``-Wl,--disable-new-dtags`` so that its run path also serves the
libraries' own dependencies, and, for a release that runs with its own C
library (4.20, from Debian 13), with that release's dynamic loader as its
interpreter.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..native import Release, build as native_build, compiler

HERE = Path(__file__).resolve().parent
SHIM_SOURCE, DRIVER_SOURCE = HERE / "fake_hypercalls.c", HERE / "restore.c"
SHIM, DRIVER = "fake_hypercalls.so", "xenstream-restore"
NEEDS = ("include/xenguest.h", "lib/libxenguest.so")


@dataclass(frozen=True)
class Built:
    release: Release
    shim: Path
    driver: Path


def commands(rel: Release, cc: str, out: Path) -> list[list[str]]:
    """The compiler command lines (shown when a build fails)."""
    shim = [cc, "-shared", "-fPIC", "-O1", "-g", "-Wall", "-I", str(rel.include),
            str(SHIM_SOURCE), "-o", str(out / SHIM)]
    rpath = rel.library_path
    driver = [cc, "-O1", "-g", "-Wall", "-I", str(rel.include), str(DRIVER_SOURCE),
              "-o", str(out / DRIVER), "-L", str(rel.libdir),
              f"-Wl,-rpath,{rpath}", f"-Wl,-rpath-link,{rpath}", "-Wl,--disable-new-dtags",
              "-lxenguest", "-lxenctrl", "-lxentoollog", "-ldl"]
    if rel.loader:
        # the release's own C library is newer than the build machine's: let
        # the libraries' references to it be resolved at run time, by it
        driver += [f"-Wl,--dynamic-linker={rel.loader}", "-Wl,--allow-shlib-undefined"]
    return [shim, driver]


def build(where=None) -> Built:
    """Build (or reuse) the shim and the driver for the release at ``where``."""
    rel = Release.locate(where, needs=NEEDS)
    cc = compiler("the libxenguest testee's fake hypervisor and restore driver")
    folder = native_build(f"libxenguest-{rel.name}", (SHIM_SOURCE, DRIVER_SOURCE),
                          lambda out: commands(rel, cc, out), (SHIM, DRIVER))
    return Built(rel, folder / SHIM, folder / DRIVER)
