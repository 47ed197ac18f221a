"""Bad arguments and hostile environments for every ``xenstream`` subcommand:
one line on stderr, exit 2, never a traceback, and nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xenstream.cli import main
from xenstream.reference import build, legacy, libxc
from xenstream.reference.libxc import DomainType


@pytest.fixture
def place(tmp_path, monkeypatch):
    """A folder with one of everything, as the working directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "good.xc").write_bytes(libxc.encode(build.libxc_stream(DomainType.X86_PV)))
    # no qemu record: convert-legacy's defaults (-f libxc) convert it (a qemu
    # record needs -f libxl, --skip-qemu or --append-qemu)
    (tmp_path / "legacy.img").write_bytes(legacy.encode(legacy.build_hvm_stream(width=64, qemu=None)))
    os.link(tmp_path / "legacy.img", tmp_path / "hardlink.img")
    (tmp_path / "dir").mkdir()
    (tmp_path / "not-json").write_text("nope")
    (tmp_path / "other-shape.json").write_text(json.dumps({"cases": [1, 2]}))
    (tmp_path / "list.json").write_text("[]")
    bad = tmp_path / "bad-manifest"
    bad.mkdir()
    (bad / "manifest.json").write_text(json.dumps({"not": "a manifest"}))
    worse = tmp_path / "worse-manifest"
    worse.mkdir()
    (worse / "manifest.json").write_text(json.dumps([{"id": 1}]))
    junk = tmp_path / "junk-manifest"
    junk.mkdir()
    (junk / "manifest.json").write_text("{")
    rep = tmp_path / "rep"
    rep.mkdir()
    (rep / "results.json").write_text(json.dumps({"implementation": "x", "cases": []}))
    return tmp_path


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


BAD = [
    # verify, dump
    ("verify -f nope -i good.xc", "invalid choice: 'nope'"),
    ("verify -f libxc -i missing.xc", "cannot open 'missing.xc'"),
    ("verify -f libxc -i dir", "dir"),
    ("verify -f libxc -i /proc/self/mem", "cannot read /proc/self/mem: Input/output error"),
    ("verify -f libxc -i 97", "cannot open '97'"),
    ("verify -f libxc -w 32 -i good.xc", "takes no option --width"),
    ("verify --role sloppy -i good.xc", "invalid choice: 'sloppy'"),
    ("verify --frobnicate", "unrecognized arguments"),
    ("dump -f libxc -i /proc/self/mem", "cannot read /proc/self/mem"),
    ("dump -f libxc -i missing.xc", "cannot open"),
    # rules
    ("rules --format nope", "invalid choice: 'nope'"),
    ("rules --json --markdown", "not allowed with"),
    # convert-legacy
    ("convert-legacy -i legacy.img", "-o/--out"),
    ("convert-legacy -i legacy.img -o legacy.img", "is an input"),
    ("convert-legacy -i legacy.img -o hardlink.img", "is an input (as legacy.img)"),
    ("convert-legacy -i legacy.img -o missing-dir/out.bin", "missing-dir/out.bin: No such file"),
    ("convert-legacy -i legacy.img -o dir", "dir"),
    ("convert-legacy -i legacy.img -o /dev/full", "/dev/full: No space left on device"),
    ("convert-legacy -i /proc/self/mem -o out.bin", "cannot read /proc/self/mem"),
    ("convert-legacy -i missing.img -o out.bin", "cannot open missing.img"),
    ("convert-legacy -i legacy.img -o out.bin -w 48", "invalid choice: '48'"),
    ("convert-legacy -i legacy.img -o 97", "cannot write to descriptor 97"),
    # sample
    ("sample libxc -n 1 --out s", "one of the arguments --valid --malformed is required"),
    ("sample libxc --valid -n -1 --out s", "-n must not be negative"),
    ("sample libxc --valid -n 1 --out good.xc", "--out good.xc: not a folder"),
    ("sample nope --valid --out s", "invalid choice: 'nope'"),
    ("sample xenstore --malformed --variant c-restorable --out s", "--variant goes with --valid"),
    ("sample xenstore --valid --variant nope --out s", "no valid variant 'nope'; known: c-restorable"),
    ("sample xenstore --valid --variant c-restorable --profile c-xenstored --out s", "do not go together"),
    # corpus
    ("corpus", "say build, check, add or stats"),
    ("corpus build --dir good.xc", "--dir good.xc: not a folder"),
    ("corpus check --dir missing", "--dir missing: no such folder"),
    ("corpus check --dir dir", "no manifest.json"),
    ("corpus stats --dir /nonexistent", "--dir /nonexistent: no such folder"),
    ("corpus stats --dir bad-manifest", "not a corpus manifest"),
    ("corpus stats --dir worse-manifest", "entry 0 is not a corpus entry"),
    ("corpus stats --dir junk-manifest", "not JSON"),
    ("corpus add dir -f libxc -d x --dir rep", "dir: is a folder"),
    ("corpus add missing.xc -f libxc -d x --dir rep", "cannot read missing.xc"),
    ("corpus add good.xc -f nope -d x --dir rep", "invalid choice: 'nope'"),
    ("corpus add good.xc -f libxc -d x --dir junk-manifest", "not JSON"),
    ("corpus add good.xc -f libxc -d x --dir missing", "no such folder"),
    # report
    ("report missing", "missing: cannot read it"),
    ("report not-json", "not a conformance report"),
    ("report other-shape.json", "not a conformance report"),
    ("report list.json", "not a conformance report"),
    ("report dir", "dir: cannot read it"),
    ("report rep -o missing-dir/r.md", "missing-dir/r.md: No such file or directory"),
    ("report rep -o rep/results.json", "is an input"),
    ("report rep -o dir", "-o dir: is a folder"),
    ("report rep --by nope", "invalid choice: 'nope'"),
    # the command itself
    ("nope", "invalid choice: 'nope'"),
]


@pytest.mark.parametrize("line, says", BAD, ids=[b[0] for b in BAD])
def test_bad_arguments_are_one_line_and_exit_2(line, says, place, capsys):
    before = snapshot(place)
    try:
        rc = main(line.split())
    except SystemExit as exc:
        rc = exc.code
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert rc == 2, (out.out, out.err)
    assert len(lines) == 1, out.err
    assert says in lines[0] and "internal error" not in lines[0] and "Traceback" not in out.err
    assert snapshot(place) == before   # nothing written, nothing left (no temporary file)


def test_no_command_at_all(capsys):
    assert main([]) == 2


def test_failed_conversion_leaves_the_existing_output_untouched(place, capsys):
    out = place / "out.bin"
    out.write_bytes(b"precious")
    (place / "truncated.img").write_bytes((place / "legacy.img").read_bytes()[:300])
    before = snapshot(place)
    assert main(["convert-legacy", "-i", "truncated.img", "-o", "out.bin"]) == 1
    assert out.read_bytes() == b"precious"
    assert snapshot(place) == before
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "legacy.stream.truncated" in err[0]


def test_conversion_replaces_the_output_atomically_and_keeps_its_mode(place):
    out = place / "out.bin"
    out.write_bytes(b"old")
    out.chmod(0o640)
    link = place / "link.bin"
    link.symlink_to(out)
    assert main(["convert-legacy", "-i", "legacy.img", "-o", "link.bin"]) == 0
    assert link.is_symlink() and out.stat().st_mode & 0o777 == 0o640
    assert main(["verify", "-f", "libxc", "--role", "restore", "-i", "out.bin"]) in (0, 1)
    assert out.read_bytes()[:8] == libxc.encode(build.libxc_stream(DomainType.X86_HVM))[:8]
    assert sorted(p.name for p in place.iterdir() if p.name.startswith(".")) == []


#: The folder ``xenstream`` is imported from, for commands run elsewhere.
IMPORT_ROOT = str(Path(__import__("xenstream").__file__).resolve().parents[1])
ENV = dict(os.environ, PYTHONPATH=IMPORT_ROOT)


def run_cli(*args, stdout=subprocess.PIPE, cwd=None):
    return subprocess.run([sys.executable, "-m", "xenstream", *args], stdout=stdout,
                          stderr=subprocess.PIPE, text=True, cwd=cwd, env=ENV)


def test_verbose_goes_to_stderr_when_the_stream_goes_to_stdout(place):
    p = subprocess.run([sys.executable, "-m", "xenstream", "convert-legacy", "-i", "legacy.img",
                        "-o", "1", "-v"], capture_output=True, cwd=place, env=ENV)
    assert p.returncode == 0, p.stderr
    assert p.stdout[:8] == libxc.encode(build.libxc_stream(DomainType.X86_HVM))[:8]
    assert b"64-bit toolstack" in p.stderr and b"toolstack" not in p.stdout[:200]


@pytest.mark.parametrize("args", [["rules"], ["dump", "-f", "libxc", "-i", "good.xc"],
                                  ["convert-legacy", "-i", "legacy.img", "-o", "1"]])
def test_a_full_disk_on_stdout_is_one_line(args, place):
    with open("/dev/full", "w") as full:
        p = run_cli(*args, stdout=full, cwd=place)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1, p.stderr
    assert "No space left on device" in lines[0] and "Traceback" not in p.stderr


def test_report_refuses_its_own_input_by_hard_link(place, capsys):
    os.link(place / "rep" / "results.json", place / "same.json")
    before = snapshot(place)
    assert main(["report", "rep", "-o", "same.json"]) == 2
    assert "is an input" in capsys.readouterr().err
    assert snapshot(place) == before


def test_corpus_add_writes_file_and_manifest(place, capsys):
    folder = place / "c"
    folder.mkdir()
    assert main(["corpus", "add", "good.xc", "-f", "libxc", "-d", "a valid stream", "--dir", "c"]) == 0
    listed = json.loads((folder / "manifest.json").read_text())
    assert len(listed) == 1 and (folder / listed[0]["path"]).is_file()
    assert not [p for p in folder.rglob(".*")]   # no temporary file left
    assert main(["corpus", "stats", "--dir", "c"]) == 0
