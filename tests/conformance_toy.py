"""A toy stream format for testing the conformance runner without the real codecs.

``TOY`` then a version octet (must be 1), then records ``type, length, body``
(one octet each for type and length): type 0 END (empty, last), 1 DATA,
2 RESERVED (body must be zero: a writer rule), 3 ODD (an either rule).
Registered as format ``toy`` by :func:`register`; ``FAKE_VERIFIER`` is the
source of an external verifier with deliberate bugs.
"""

from __future__ import annotations

import pathlib
import sys
import types

from xenstream.reference import formats
from xenstream.reference.formats import Codec
from xenstream.reference.rules import Severity, define
from xenstream.reference.source import Truncated

R, W, E = Severity.REJECT, Severity.WRITER, Severity.EITHER
for rid, sev in (("toy.header.magic", R), ("toy.header.version", R), ("toy.stream.truncated", R),
                 ("toy.stream.trailing", R), ("toy.record.type", R), ("toy.reserved.zero", W),
                 ("toy.odd.present", E), ("toy.end.length", R)):
    define(rid, sev, "xl", "toy section", f"toy rule {rid}")


def validate(src, checker):
    try:
        magic = src.read_exact(3, "magic")
        if magic != b"TOY":
            checker.fail("toy.header.magic", 0, "bad magic")
        (version,) = src.read_exact(1, "version")
        if version != 1:
            checker.report("toy.header.version", 3, f"version {version}")
        while True:
            off = src.offset
            rtype, length = src.read_exact(2, "record header")
            body = src.read_exact(length, "body")
            if rtype == 0:
                if length:
                    checker.report("toy.end.length", off, "END with a body")
                break
            if rtype == 2 and any(body):
                checker.report("toy.reserved.zero", off, "reserved not zero")
            elif rtype == 3:
                checker.report("toy.odd.present", off, "odd record")
            elif rtype not in (1, 2, 3):
                checker.fail("toy.record.type", off, f"type {rtype}")
        if not src.at_eof():
            checker.report("toy.stream.trailing", src.offset, "data after END")
    except Truncated as t:
        checker.fail("toy.stream.truncated", t.end, str(t))


def _no(*a, **k):
    raise NotImplementedError


CODEC = Codec("toy", "toy format for tests", validate, _no, _no, _no)


def register(monkeypatch=None) -> None:
    module = types.ModuleType("xenstream_conformance_toy_format")
    module.CODEC = CODEC
    sys.modules[module.__name__] = module
    if monkeypatch is not None:
        monkeypatch.setitem(formats.FORMAT_MODULES, "toy", module.__name__)
    else:
        formats.FORMAT_MODULES["toy"] = module.__name__


def stream(*records, version=1, end=True) -> bytes:
    out = b"TOY" + bytes([version])
    for rtype, body in records:
        out += bytes([rtype, len(body)]) + body
    if end:
        out += b"\0\0"
    return out


VALID = stream((1, b"hello"), (2, b"\0\0"))
CASES = [  # name, data, rule, expected
    ("plain", VALID, None, "accept"),
    ("empty-data", stream((1, b"")), None, "accept"),
    ("bad-version", stream((1, b"x"), version=2), "toy.header.version", "reject"),
    ("reserved-set", stream((2, b"\1")), "toy.reserved.zero", "writer"),
    ("odd", stream((3, b"")), "toy.odd.present", "either"),
    ("trailing", VALID + b"\0", "toy.stream.trailing", "reject"),
]

#: An external verifier for the toy format with deliberate bugs:
#: it ignores RESERVED bodies (fine for restore, wrong for strict), crashes
#: (exit 2) on ODD records, hangs on type 9, segfaults on type 10, floods
#: on type 11, allocates on type 12, and accepts trailing data from a pipe only.
FAKE_VERIFIER = r'''#!PYTHON
import os, signal, stat, sys, time
args = sys.argv[1:]
path = args[args.index("-i") + 1]
f = open(int(path), "rb") if path.isdigit() else open(path, "rb")
data = f.read()
def out(rc, msg=""):
    if msg:
        print(msg, file=sys.stderr)
    sys.exit(rc)
if data[:3] != b"TOY" or len(data) < 4 or data[3] != 1:
    out(1, "bad header")
i = 4
while True:
    if i + 2 > len(data):
        out(1, "truncated")
    t, n = data[i], data[i + 1]
    body = data[i + 2:i + 2 + n]
    if len(body) < n:
        out(1, "truncated")
    i += 2 + n
    if t == 0:
        break
    if t == 3:
        out(2, "Script Error: odd")
    if t == 9:
        time.sleep(60)
    if t == 10:
        os.kill(os.getpid(), signal.SIGSEGV)
    if t == 11:
        while True:
            sys.stderr.write("x" * 65536)
    if t == 12:
        b = bytearray(1 << 34)
if i != len(data) and not stat.S_ISFIFO(os.fstat(f.fileno()).st_mode):
    out(1, "trailing")
out(0)
'''


def write_fake_verifier(folder) -> str:
    path = folder / "fake-verify"
    path.write_text(FAKE_VERIFIER.replace("PYTHON", sys.executable))
    path.chmod(0o755)
    return str(path)


#: The conformance suite's module, as a checkout has it.
SUITE = pathlib.Path(__file__).resolve().parent.parent / "conformance" / "test_conformance.py"


def make_suite(pytester, monkeypatch):
    """A pytester folder holding the suite, the toy corpus and the fake verifier, with the
    toy format registered: the ``suite`` fixture of the plugin and report tests."""
    register(monkeypatch)
    # what a checkout's root conftest.py (or an install's entry point) does
    pytester.makeconftest('pytest_plugins = ["xenstream.conformance.plugin"]\n')
    pytester.makepyfile(test_conformance=SUITE.read_text())
    write_corpus(pytester.path / "corpus")
    pytester.fake = write_fake_verifier(pytester.path)
    return pytester


def write_corpus(folder, cases=CASES) -> None:
    import hashlib
    import json

    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, data, rule, expected in cases:
        (folder / f"{name}.bin").write_bytes(data)
        entries.append({"id": f"toy/{name}", "path": f"{name}.bin", "format": "toy", "version": 1,
                        "byteorder": "little", "expected": expected, "rule": rule,
                        "section": "toy section", "description": name, "origin": "test",
                        "sha256": hashlib.sha256(data).hexdigest()})
    (folder / "manifest.json").write_text(json.dumps(entries))
