"""The README's quick start is what CI runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_has_exactly_two_commands():
    commands = quick_start_commands()
    assert len(commands) == 2
    assert "pytest conformance" in commands[0]
    assert "pytest tests" in commands[1]


def test_ci_runs_both_readme_commands_verbatim():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    for command in quick_start_commands():
        assert command in ci, command


def _section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    return text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def test_every_xenstream_command_is_in_the_table():
    from xenstream.cli import COMMANDS

    table = _section("The `xenstream` command")
    for name in COMMANDS:
        if name == "corpus":
            for action in ("build", "check", "add", "stats"):
                assert f"`xenstream corpus {action}" in table, action
        else:
            assert f"`xenstream {name} " in table or f"`xenstream {name}`" in table, name


def test_example_commands_use_real_options_and_tools():
    """The examples run as printed after scripts/fetch-xen-tools: every option
    exists, every tool path is a wrapper that script writes."""
    import shlex
    import subprocess
    import sys

    block = re.search(r"```sh\n(.*?)```", _section("Testing your implementation"), re.S).group(1)
    lines = [ln for ln in block.splitlines() if ln.strip()]
    assert lines[0] == "python3 scripts/fetch-xen-tools"
    runs = [shlex.split(ln) for ln in lines[1:]]
    assert runs and all(r[:4] == ["python", "-m", "pytest", "conformance"] for r in runs)
    helptext = subprocess.run([sys.executable, "-m", "pytest", "conformance", "--help"],
                              capture_output=True, text=True, cwd=ROOT).stdout
    fetch = (ROOT / "scripts" / "fetch-xen-tools").read_text()
    for run in runs:
        for word in run[4:]:
            name, _, value = word.partition("=")
            assert name in helptext, name
            if name == "--impl" and value.startswith(".cache/xen-tools/"):
                assert value.rsplit("/", 1)[1] in fetch, value
