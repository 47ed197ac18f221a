"""The xenstream command: exit codes, output forms, options, and no tracebacks on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from xenstream.cli import main
from xenstream.reference import build, libxc, libxl
from xenstream.reference.libxc import DomainType


@pytest.fixture
def files(tmp_path):
    good = tmp_path / "good.xc"
    good.write_bytes(libxc.encode(build.libxc_stream(DomainType.X86_PV)))
    reserved = bytearray(good.read_bytes())
    reserved[16:18] = (2).to_bytes(2, "big")
    writer = tmp_path / "writer.xc"
    writer.write_bytes(bytes(reserved))
    bad = tmp_path / "bad.xc"
    bad.write_bytes(good.read_bytes()[:100])
    hvm = tmp_path / "hvm.libxl"
    hvm.write_bytes(libxl.encode(build.libxl_stream()))
    return {"good": str(good), "writer": str(writer), "bad": str(bad), "libxl": str(hvm), "dir": tmp_path}


def test_verify_exit_codes(files, capsys):
    assert main(["verify", "-f", "libxc", "-i", files["good"]]) == 0
    assert main(["verify", "-f", "libxc", "-i", files["bad"]]) == 1
    err = capsys.readouterr().err
    assert "libxc.stream.truncated" in err and "offset 100" in err
    assert main(["verify", "-f", "libxc", "-i", files["writer"]]) == 1
    assert main(["verify", "-f", "libxc", "--role", "restore", "-i", files["writer"]]) == 0
    assert main(["verify", "-f", "libxl", "-i", files["libxl"]]) == 0
    assert main(["verify", "-f", "libxc", "-i", str(files["dir"] / "missing")]) == 2


def test_verify_quiet_and_json(files, capsys):
    assert main(["verify", "-q", "-f", "libxc", "-i", files["bad"]]) == 1
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    assert main(["verify", "--json", "-f", "libxc", "-i", files["writer"]]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["kind"] == "finding" and lines[0]["rule"] == "libxc.image_header.options_reserved"
    assert lines[0]["offset"] == 16 and lines[0]["severity"] == "writer"
    assert lines[-1] == {"kind": "summary", "verdict": "reject", "role": "strict", "format": "libxc",
                         "findings": 1, "refused": 1}


def test_verify_verbose_summarises(files, capsys):
    assert main(["verify", "-v", "-f", "libxc", "-i", files["good"]]) == 0
    out = capsys.readouterr().out
    assert "X86_PV" in out and "PAGE_DATA: 3 record(s)" in out


def test_verify_reads_a_file_descriptor(files):
    with open(files["good"], "rb") as f:
        proc = subprocess.run([sys.executable, "-m", "xenstream", "verify", "-f", "libxc", "-i", "0"],
                              stdin=f, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    fd = os.open(files["bad"], os.O_RDONLY)
    try:
        proc = subprocess.run([sys.executable, "-m", "xenstream", "verify", "-f", "libxc", "-i", str(fd)],
                              pass_fds=(fd,), capture_output=True, text=True)
    finally:
        os.close(fd)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr


def test_dump_text_and_json(files, capsys):
    assert main(["dump", "-f", "libxl", "-i", files["libxl"]]) == 0
    text = capsys.readouterr().out
    assert "EMULATOR_XENSTORE_DATA" in text and "PAGE_DATA" in text and "physmap/" in text
    assert main(["dump", "--json", "-f", "libxc", "-i", files["good"]]) == 0
    items = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert items[0]["kind"] == "image header"
    pages = [i for i in items if i.get("type") == "PAGE_DATA"]
    assert pages and pages[0]["fields"]["count"] == 4 and "pages" not in pages[0]["fields"]
    assert main(["dump", "-f", "libxc", "-i", files["bad"]]) == 1
    assert "libxc.stream.truncated" in capsys.readouterr().err


def test_rules_listing(capsys):
    assert main(["rules", "--format", "libxc"]) == 0
    out = capsys.readouterr().out
    assert "libxc.page_data.count_nonzero" in out and "xenstore." not in out
    assert main(["rules", "--json"]) == 0
    assert all(json.loads(line)["id"] for line in capsys.readouterr().out.splitlines())


def test_usage_errors_exit_2(files, capsys):
    assert main(["verify", "-f", "libxc", "-w", "32", "-i", files["good"]]) == 2
    assert "takes no option --width" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["verify", "-f", "nonsense"])
    assert info.value.code == 2
    assert main([]) == 2


def test_random_garbage_never_tracebacks(tmp_path):
    import random

    rng = random.Random(1)
    for fmt in ("libxc", "libxl", "xl", "xenstore", "legacy"):
        for n in (0, 1, 7, 8, 40, 300):
            path = tmp_path / f"{fmt}-{n}"
            path.write_bytes(bytes(rng.randrange(256) for _ in range(n)))
            proc = subprocess.run([sys.executable, "-m", "xenstream", "verify", "-f", fmt, "-i", str(path)],
                                  capture_output=True, text=True)
            assert proc.returncode == 1, (fmt, n, proc.stderr)
            assert "Traceback" not in proc.stderr


def test_help_is_plain_text_and_gives_the_exit_codes(capsys):
    from xenstream.cli import COMMANDS

    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    assert "``" not in top and ":mod:" not in top
    assert "exit status" in top
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        text = " ".join(capsys.readouterr().out.split())
        assert name in top, name
        assert "``" not in text, name
        assert "exit status: 0 " in text and "2 usage, input/output or internal error" in text, name
