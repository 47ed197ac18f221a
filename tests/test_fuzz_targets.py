"""Every fuzz target's one-input function upholds its invariant on every corpus file (no atheris needed)."""

from __future__ import annotations

import json

import pytest

from xenstream.corpus import manifest as mf
from xenstream.corpus.build import default_dir
from xenstream.fuzz.harness import Chooser, InvariantError, load_target, mutate, seed_formats, target_names

CORPUS = default_dir()
ENTRIES = json.loads((CORPUS / mf.MANIFEST).read_text()) if (CORPUS / mf.MANIFEST).is_file() else []

#: Known findings: (target, corpus id) -> why.  Each is reported to the owner of the code;
#: ``strict`` xfail so that the fix shows up here.
KNOWN: dict[tuple[str, str], str] = {
    # (the three converter findings of the first fuzz run, PV images without page batches,
    # were fixed by the rule legacy.page_batch.none)
}


def cases():
    for target in target_names():
        for entry in ENTRIES:
            if entry["format"] in seed_formats(target):
                marks = []
                why = KNOWN.get((target, entry["id"]))
                if why:
                    marks.append(pytest.mark.xfail(reason=why, raises=InvariantError, strict=True))
                yield pytest.param(target, entry["path"], id=f"{target}:{entry['id']}", marks=marks)


@pytest.mark.parametrize("target,path", list(cases()))
def test_target_on_corpus_file(target, path):
    load_target(target)((CORPUS / path).read_bytes())


@pytest.mark.parametrize("target", target_names())
def test_target_on_odd_inputs(target):
    one = load_target(target)
    for data in (b"", b"\0", b"\xff" * 7, bytes(64), b"\xff" * 64, bytes(range(256)) * 3):
        one(data)


def test_every_target_has_a_module_with_an_atheris_entry_point():
    from xenstream.fuzz.harness import fuzz_dir

    for target in target_names():
        text = (fuzz_dir() / f"{target}.py").read_text()
        assert "TestOneInput" in text and 'if __name__ == "__main__":' in text


@pytest.mark.parametrize("fmt", ["libxc", "libxl", "xl", "xenstore", "legacy"])
def test_mutations_are_deterministic_and_varied(fmt):
    from xenstream.fuzz.harness import seeds

    pool = seeds(fmt)
    outs = set()
    for i in range(40):
        recipe = bytes([i, i * 7 % 256, i * 13 % 256]) * 8
        a = mutate(fmt, pool[0], Chooser(recipe))
        assert a == mutate(fmt, pool[0], Chooser(recipe))
        outs.add(a)
    assert len(outs) > 10


def test_invariant_breaks_are_reported():
    from xenstream.fuzz import harness

    with pytest.raises(InvariantError):
        raise InvariantError("x")
    assert issubclass(InvariantError, AssertionError)
    assert harness.MAX_INPUT >= 1 << 16
