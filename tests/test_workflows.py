"""The GitHub workflows cannot run here; what can be checked of them is: they
parse, every job is bounded in time, every script and module they call
exists, the options they give the conformance suite are its own, and the
nightly run covers every real testee."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
#: what each CI script runs, so that the nightly matrix can be checked for every real testee
REAL_TESTEES = {
    "conformance-debian": ["verify-stream-v2", "convert-legacy-stream"],
    "conformance-libxenguest": ["--impl-kind=libxenguest", "4.17 4.20"],
    "conformance-xenstored": ["--impl-kind=xenstored", "4.17 4.20"],
}


def load(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict) and isinstance(data.get("jobs"), dict), path
    return data


def steps(data: dict):
    for name, job in data["jobs"].items():
        for step in job.get("steps", []):
            yield name, job, step


def matrix_values(job: dict, command: str) -> list[str]:
    """``command`` once per value of the matrix variables it names."""
    out = [command]
    for key, values in (job.get("strategy", {}).get("matrix", {}) or {}).items():
        marker = "${{ matrix.%s }}" % key
        if any(marker in c for c in out):
            out = [c.replace(marker, str(v)) for c in out for v in values]
    return out


def test_there_are_workflows():
    assert [p.name for p in WORKFLOWS] == ["nightly.yml"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_job_is_bounded_and_named(path):
    data = load(path)
    assert data.get("name") and (data.get("on") or data.get(True))  # YAML 1.1 reads `on` as true
    for name, job in data["jobs"].items():
        assert isinstance(job.get("timeout-minutes"), int) and 0 < job["timeout-minutes"] <= 360, name
        assert job.get("runs-on"), name
        assert job.get("steps"), name


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_script_and_module_a_step_calls_exists(path):
    data = load(path)
    for _name, job, step in steps(data):
        if "run" not in step:
            assert "uses" in step, step
            continue
        for command in matrix_values(job, step["run"]):
            for script in re.findall(r"\bscripts/[\w.-]+", command):
                assert (ROOT / script).is_file(), f"{path.name}: {script} does not exist"
            for module in re.findall(r"python3? -m ([\w.]+)", command):
                if module in ("pip", "pytest", "coverage"):
                    continue
                assert importlib.util.find_spec(module) is not None, f"{path.name}: no module {module}"


def _plugin_options() -> set[str]:
    from xenstream.conformance import plugin

    if not plugin._OPTIONS:
        parser = pytest.Parser()
        plugin.pytest_addoption(parser)
    return set(plugin._OPTIONS)


def test_the_nightly_conformance_runs_every_real_testee_with_the_nightly_profile():
    data = load(ROOT / ".github" / "workflows" / "nightly.yml")
    job = data["jobs"]["conformance"]
    assert job["env"]["HYPOTHESIS_PROFILE"] == "nightly"
    from hypothesis import settings

    import xenstream.strategies.settings  # noqa: F401 - registers the profiles
    assert settings.get_profile("nightly").max_examples >= 1000
    run = next(s["run"] for _n, j, s in steps(data) if j is job and "bash scripts/" in s.get("run", ""))
    commands = matrix_values(job, run)
    scripts = {re.search(r"scripts/([\w.-]+)", c).group(1) for c in commands}
    assert scripts == set(REAL_TESTEES)
    for script, testees in REAL_TESTEES.items():
        text = (ROOT / "scripts" / script).read_text()
        assert all(t in text for t in testees), script
        assert '"$@"' in text, f"{script} passes no options on to pytest"
    known = _plugin_options() | {"--hypothesis-seed"}
    for command in commands:
        words = shlex.split(command)
        options = [w.split("=", 1)[0] for w in words if w.startswith("--")]
        assert set(options) <= known, set(options) - known
        assert "--new-failures-only" in options and "--hypothesis-seed" in options
    upload = [s for _n, j, s in steps(data) if j is job and "upload-artifact" in s.get("uses", "")]
    assert upload and upload[0].get("if") == "always()" and upload[0]["with"]["path"] == "reports/"
