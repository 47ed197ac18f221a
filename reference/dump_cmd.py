"""``xenstream dump``: print a decoded stream as text or JSON lines.

Headers and each record with offset, type, length and fields; PAGE_DATA and
opaque blobs are summarised, never printed.  What could not be decoded is
reported like ``verify`` does, and the exit code says whether the stream
broke a rule the role refuses.
"""

from __future__ import annotations

import json
import sys

from .checker import Checker
from .errors import StreamError, UsageError
from .formats import names, get_codec
from .rules import Role
from .verify_cmd import add_format_options, format_options, open_input


def add_arguments(p) -> None:
    p.add_argument("-i", "--in", dest="input", default="0", metavar="FILE|FD",
                   help="stream to dump: a path or a file descriptor number (default 0, stdin)")
    p.add_argument("-f", "--format", default=None, choices=list(names()),
                   help="format of the stream; without it, the one whose magic the input starts with")
    p.add_argument("--json", action="store_true", help="one JSON object per header or record")
    p.add_argument("--role", choices=[r.value for r in Role], default=Role.RESTORE.value,
                   help="which findings make the exit code 1 (default restore)")
    add_format_options(p)


def _fmt(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_fmt(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def render_text(items):
    """The generic text form: one line per header or record."""
    for item in items:
        where = "" if item.get("offset") is None else f"@0x{item['offset']:x} "
        if item["kind"] == "record":
            idx = f"#{item['index']} " if item.get("index") is not None else ""
            length = f" len={item['body_length']}" if item.get("body_length") is not None else ""
            indent = "    " if item["layer"] == "libxc" and item.get("index") is None else "  "
            head = f"{indent}{item['layer']} {idx}{where}{item['type']}{length}"
        else:
            head = f"{item['layer']} {where}{item['kind']}"
        fields = item.get("fields") or {}
        yield head + ("" if not fields else ": " + ", ".join(f"{k}={_fmt(v)}" for k, v in fields.items()))


class _Written(Exception):
    """Writing to stdout failed (told apart from reading the input)."""

    def __init__(self, error: OSError):
        super().__init__(error)
        self.error = error


def _emit(line: str) -> None:
    try:
        print(line)
    except OSError as exc:
        raise _Written(exc) from None


def run(args) -> int:
    from .verify_cmd import recognised_format

    src = open_input(args.input)
    args.format, _ = recognised_format(args, src)
    try:
        codec = get_codec(args.format)
        options = format_options(args, codec)
    except UsageError:
        src.close()
        raise
    role = Role(args.role)
    checker = Checker(role)
    items = codec.dump(src, checker, **options)
    try:
        if args.json:
            for item in items:
                _emit(json.dumps(item, default=str))
        else:
            renderer = codec.render_text or render_text
            for line in renderer(items):
                _emit(line)
    except StreamError:
        pass  # recorded by the checker; reported below
    except _Written as exc:   # writing to stdout failed: reported as such
        if isinstance(exc.error, BrokenPipeError):
            raise exc.error from None
        raise OSError(exc.error.errno, exc.error.strerror, "standard output") from None
    except OSError as exc:
        raise UsageError(f"cannot read {args.input}: {exc.strerror or exc}") from None
    finally:
        src.close()
    for finding in checker.findings:
        if args.json:
            print(json.dumps({"kind": "finding", **finding.to_json()}))
        else:
            print(f"finding: {finding.describe()}", file=sys.stderr)
    return 0 if checker.accepted else 1
