"""Add a stream to the corpus by hand (a minimised fuzz finding), labelled by the reference."""

from __future__ import annotations

from pathlib import Path

from xenstream.reference.errors import UsageError

from . import manifest as mf
from .build import make_entry
from .verdict import classify, options_of


def add(folder: Path, file: Path, fmt: str, description: str, *, name: str | None = None,
        origin: str = "fuzz", meta: dict | None = None) -> mf.Entry:
    from xenstream.reference.outfile import same_file, write_atomic

    folder = Path(folder)
    file = Path(file)
    if file.is_dir():
        raise UsageError(f"{file}: is a folder; give a stream file")
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {file}: {exc.strerror or exc}") from None
    try:
        verdict = classify(fmt, data, options_of(fmt, meta))
    except Exception as exc:  # noqa: BLE001 - the reference's own bug, not the stream's fault
        raise UsageError(f"the reference verifier fails on {file} ({type(exc).__name__}: {exc}); "
                         "fix that first, then add the file") from None
    name = name or f"{origin}-{mf.sha256(data)[:12]}"
    extra = dict(meta or {})
    if verdict.offset is not None:
        extra["offset"] = verdict.offset
    entry = make_entry(fmt, data, expected=verdict.expected, rule=verdict.rule, name=name,
                       description=description, origin=origin, meta=extra)
    entries = mf.load(folder)
    if any(e.path == entry.path or (e.format == fmt and e.sha256 == entry.sha256) for e in entries):
        raise UsageError(f"{entry.path}: already in the corpus")
    target = folder / entry.path
    if same_file(target, file):
        raise UsageError(f"{file} is already {target}, unlisted: remove it or list it by hand")
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, data)
    try:
        mf.save(folder, entries + [entry])
    except BaseException:
        target.unlink(missing_ok=True)   # no file the manifest does not list
        raise
    return entry
