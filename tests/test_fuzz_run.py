"""The fuzz driver: arguments, target list, the reducer-based minimiser (no atheris run here)."""

from __future__ import annotations

from xenstream.fuzz import harness, minimize, run
from xenstream.fuzz.harness import target_names


def test_target_list():
    names = target_names()
    assert len(names) == len(set(names)) == 3 * len(harness.FORMATS) + 1  # decode, roundtrip, mutate; convert
    assert run.main(["--list"]) == 0


def test_defaults_suit_a_nightly_run():
    args = run.parse_args([])
    assert args.seconds == 600
    assert run.parse_args(["--seconds", "10"]).seconds == 10


def test_unknown_target_is_a_usage_error():
    assert run.main(["--targets", "nope"]) == 2


def test_failure_signature():
    def boom(data):
        if b"!" in data:
            raise ValueError("boom")

    assert minimize.failure(boom, b"abc") is None
    kind, _, _ = minimize.failure(boom, b"a!c")
    assert kind == "ValueError"


def test_stats_parsing():
    text = "#99 INITED cov: 91 ft: 171\n#8931 DONE cov: 98 ft: 273 exec/s: 811\n" \
           "stat::number_of_executed_units: 8931\nstat::average_exec_per_sec:     811\n"
    assert run._stat(r"cov: (\d+)", text) == 98
    assert run._stat(r"stat::average_exec_per_sec:\s*(\d+)", text, float) == 811.0
