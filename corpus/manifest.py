"""The corpus manifest: ``corpus/manifest.json``, one entry per stream file.

The manifest is a JSON array of objects, sorted by ``id``, with exactly these
keys (``meta`` optional):

=============  ==========================================================
``id``         ``<format>/<file name without .bin>``, unique
``path``       relative to the corpus folder: ``<format>/<prefix>_<...>.bin``
``format``     the name given to ``xenstream verify -f``
``version``    stream version from its header (int), or null
``byteorder``  ``"little"``, ``"big"``, or null
``expected``   ``"accept"``, ``"reject"``, ``"writer"``, ``"either"``
``rule``       the rule broken (``libxc.page_data.count_nonzero``); null when valid
``section``    the section of the spec that states the rule; null when valid
``description``one line
``origin``     ``"hand-written"``, ``"strategy"``, ``"fuzz"``, the real
               writer (``"xenstored-4.17"``, ``"xenstored-4.20"``: a live-update
               dump of that daemon, ``meta.store`` the store it was made from), or
               ``"writer-profile: WRITER, Xen RELEASE (PROFILE)"`` for a
               stream shaped as a released Xen writer shapes it
``sha256``     of the file, lower-case hex
``meta``       free-form details (guest type, what it was reduced from, ...)
=============  ==========================================================

File names start with the verdict at a glance: ``y_`` must accept, ``n_``
must reject, ``w_`` writer rule (strict verifiers reject, restorers
accept), ``i_`` implementation-defined (either).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from xenstream.reference.errors import UsageError
from xenstream.reference.formats import names
from xenstream.reference.rules import VERDICTS

MANIFEST = "manifest.json"
SUFFIX = ".bin"
FORMATS = names()
EXPECTED = VERDICTS
ORIGINS = ("hand-written", "strategy", "fuzz", "xenstored-4.17", "xenstored-4.20")
#: Origins whose files are not generated: `corpus build` keeps them as they are.
KEPT_ORIGINS = ("fuzz", "xenstored-4.17", "xenstored-4.20")
#: origin prefix of a writer profile's stream; the writer and release follow
WRITER_PROFILE = "writer-profile: "


def known_origin(origin) -> bool:
    return origin in ORIGINS or (isinstance(origin, str) and origin.startswith(WRITER_PROFILE))
PREFIX = {"accept": "y", "reject": "n", "writer": "w", "either": "i"}
KEYS = ("id", "path", "format", "version", "byteorder", "expected", "rule", "section",
        "description", "origin", "sha256")
OPTIONAL_KEYS = ("meta",)

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def slug(text: str) -> str:
    return _SAFE.sub("-", text).strip("-") or "x"


def file_name(fmt: str, expected: str, rule: str | None, name: str) -> str:
    """``<prefix>_<rule without format>__<name>.bin``, or ``y_<name>.bin`` for a valid file."""
    prefix = PREFIX[expected]
    if rule is None:
        return f"{prefix}_{slug(name)}{SUFFIX}"
    short = rule[len(fmt) + 1:] if rule.startswith(fmt + ".") else rule
    return f"{prefix}_{slug(short)}__{slug(name)}{SUFFIX}"


@dataclass
class Entry:
    id: str
    path: str
    format: str
    version: int | None
    byteorder: str | None
    expected: str
    rule: str | None
    section: str | None
    description: str
    origin: str
    sha256: str
    meta: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        out = asdict(self)
        if not out["meta"]:
            del out["meta"]
        return out

    @classmethod
    def from_json(cls, obj: dict) -> "Entry":
        return cls(**{k: obj.get(k) for k in KEYS}, meta=dict(obj.get("meta") or {}))


def dumps(entries: list[Entry]) -> str:
    """The manifest's text: sorted by id, stable key order, one trailing newline."""
    items = [e.to_json() for e in sorted(entries, key=lambda e: e.id)]
    return json.dumps(items, indent=1, ensure_ascii=False) + "\n"


class ManifestError(UsageError):
    """A manifest that cannot be read or is not a list of entries."""


def load(folder: Path) -> list[Entry]:
    """The entries of ``folder``'s manifest ([] when there is none);
    :class:`ManifestError` when it cannot be read or is not a manifest."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return []
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ManifestError(f"{path}: not JSON ({exc})") from None
    if isinstance(raw, dict) and "entries" in raw:
        raw = raw["entries"]
    if not isinstance(raw, list):
        raise ManifestError(f"{path}: not a corpus manifest (a JSON array of entries)")
    out = []
    for n, obj in enumerate(raw):
        if not isinstance(obj, dict) or not all(isinstance(obj.get(k), str) for k in
                                                ("id", "path", "format", "sha256")):
            raise ManifestError(f"{path}: entry {n} is not a corpus entry "
                                "(an object with id, path, format, sha256, ...)")
        out.append(Entry.from_json(obj))
    return out


def save(folder: Path, entries: list[Entry]) -> None:
    from xenstream.reference.outfile import write_atomic

    write_atomic(Path(folder) / MANIFEST, dumps(entries))


def schema_problems(raw) -> list[str]:
    """What is wrong with a parsed manifest (a list of objects); [] when nothing."""
    from xenstream.reference.rules import catalogue

    rules = catalogue()
    out: list[str] = []
    if not isinstance(raw, list):
        return ["the manifest is not a JSON array"]
    seen_ids: set[str] = set()
    seen_paths: set[str] = set()
    for n, obj in enumerate(raw):
        where = f"entry {n} ({obj.get('id') if isinstance(obj, dict) else obj!r:.40})"
        if not isinstance(obj, dict):
            out.append(f"{where}: not an object")
            continue
        missing = [k for k in KEYS if k not in obj]
        extra = [k for k in obj if k not in KEYS + OPTIONAL_KEYS]
        if missing or extra:
            out.append(f"{where}: missing keys {missing}, unknown keys {extra}")
            continue
        fmt, expected, rule, path = obj["format"], obj["expected"], obj["rule"], obj["path"]
        checks = [
            (fmt in FORMATS, f"unknown format {fmt!r}"),
            (expected in EXPECTED, f"unknown expected verdict {expected!r}"),
            (known_origin(obj["origin"]), f"unknown origin {obj['origin']!r}"),
            (obj["version"] is None or isinstance(obj["version"], int), "version is not an int or null"),
            (obj["byteorder"] in (None, "little", "big"), "byteorder is not little, big or null"),
            (isinstance(obj["sha256"], str) and re.fullmatch(r"[0-9a-f]{64}", obj["sha256"]) is not None,
             "sha256 is not 64 lower-case hex digits"),
            (isinstance(obj["description"], str) and obj["description"] != "", "no description"),
            ((rule is None) == (expected == "accept"), "rule must be null exactly when expected is accept"),
            (rule is None or rule in rules, f"unknown rule {rule!r}"),
            (rule is None or rule not in rules or rules[rule].severity.value == expected,
             f"expected {expected!r} is not the severity of {rule}"),
            (rule is None or rule not in rules or obj["section"] == rules[rule].section,
             "section is not the rule's section"),
            (isinstance(path, str) and path.startswith(fmt + "/") and path.endswith(SUFFIX)
             and "/" not in path[len(fmt) + 1:] and ".." not in path, "path is not <format>/<name>.bin"),
            (isinstance(path, str) and Path(path).name.startswith(PREFIX.get(expected, "?") + "_"),
             "file name does not start with the verdict's prefix"),
            (obj["id"] == f"{fmt}/{Path(str(path)).stem}", "id is not <format>/<file stem>"),
            ("meta" not in obj or isinstance(obj["meta"], dict), "meta is not an object"),
        ]
        out += [f"{where}: {msg}" for ok, msg in checks if not ok]
        if obj["id"] in seen_ids:
            out.append(f"{where}: duplicate id")
        if path in seen_paths:
            out.append(f"{where}: duplicate path")
        seen_ids.add(obj["id"])
        seen_paths.add(path)
    return out
