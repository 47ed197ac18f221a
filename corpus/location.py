"""Which corpus folder a ``xenstream corpus`` command works on without ``--dir``.

Inside a checkout of this project (the current folder or one of its parents
holds its ``pyproject.toml``), that checkout's ``corpus/``: what a developer
edits and commits.  Outside one, the corpus shipped with the package, which
the read-only commands (``check``, ``stats``) may use but the writing ones
(``build``, ``add``) refuse: a file written into an installed package is lost
on the next install and never reaches the repository.
"""

from __future__ import annotations

from pathlib import Path

from xenstream.reference.errors import UsageError

PROJECT = "xenstream-conformance"


def package_dir() -> Path:
    """The corpus folder of the imported package (a checkout's ``corpus/`` or site-packages)."""
    return Path(__file__).resolve().parent


def is_checkout(root: Path) -> bool:
    """Whether ``root`` is the top of a checkout of this project."""
    try:
        text = (root / "pyproject.toml").read_text(errors="replace")
    except OSError:
        return False
    return f'name = "{PROJECT}"' in text and (root / "corpus" / "build.py").is_file()


def checkout_of(start: Path) -> Path | None:
    """The checkout that holds ``start``, or None."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if is_checkout(folder):
            return folder
    return None


def default_dir(*, write: bool, cwd: Path | None = None) -> Path:
    """The corpus folder to use; ``write``: the command changes it."""
    here = checkout_of(cwd or Path.cwd())
    if here is not None:
        return here / "corpus"
    pkg = package_dir()
    if is_checkout(pkg.parent):  # imported from a checkout (editable install, PYTHONPATH)
        return pkg
    if write:
        raise UsageError(
            f"not inside a checkout of {PROJECT}, and {pkg} belongs to the installed package "
            "(a change there is lost on the next install); run this inside a checkout, or "
            "give --dir DIR")
    return pkg
