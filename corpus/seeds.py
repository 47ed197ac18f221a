"""Strategy seeds for the corpus: streams drawn from the Hypothesis strategies with fixed seeds.

The strategies package (``xenstream.strategies``) runs the same builders as
its Hypothesis strategies ``valid(format)`` and ``malformed(format)`` under a
seeded ``random.Random`` (``generate_valid``, ``generate_malformed``, what
``xenstream sample`` uses): a fixed seed per draw makes each draw repeatable,
so the corpus build stays byte for byte deterministic.  When the strategies
are not there (or a format has none), nothing is drawn and a note says so.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from . import manifest as mf

#: Draws per format: valid streams, malformed streams.
VALID_PER_FORMAT = 3
MALFORMED_PER_FORMAT = 6
BASE_SEED = 0x5EED


@dataclass
class Sample:
    format: str
    name: str
    data: bytes
    rule: str | None
    expected: str
    description: str
    meta: dict = field(default_factory=dict)


def _strategies(notes: list[str]):
    from xenstream.reference.formats import import_optional

    mod = import_optional("xenstream.strategies")
    if mod is None or not (hasattr(mod, "generate_valid") and hasattr(mod, "generate_malformed")):
        notes.append("strategies: xenstream.strategies has no seeded sampler yet; no strategy seeds")
        return None
    return mod


def strategy_samples(notes: list[str]) -> list[Sample]:
    mod = _strategies(notes)
    if mod is None:
        return []
    out: list[Sample] = []
    for fi, fmt in enumerate(mf.FORMATS):
        if hasattr(mod, "available_formats") and fmt not in mod.available_formats():
            notes.append(f"strategies: no strategies for {fmt} yet")
            continue
        for i in range(VALID_PER_FORMAT):
            seed = BASE_SEED + fi * 100 + i
            try:
                value = mod.generate_valid(fmt, random.Random(seed))
            except Exception as exc:  # noqa: BLE001
                notes.append(f"strategies: {fmt} valid seed {seed}: {type(exc).__name__}: {exc}")
                continue
            data = _as_bytes(value)
            out.append(Sample(fmt, f"strategy-{i}", data, None, "accept",
                              f"valid {fmt} stream from strategies.generate_valid (seed {seed})", {"seed": seed}))
        for i in range(MALFORMED_PER_FORMAT):
            seed = BASE_SEED + fi * 100 + 50 + i
            try:
                m = mod.generate_malformed(fmt, random.Random(seed))
            except Exception as exc:  # noqa: BLE001
                notes.append(f"strategies: {fmt} malformed seed {seed}: {type(exc).__name__}: {exc}")
                continue
            family = getattr(m, "family", None)
            desc = getattr(m, "description", "") or f"malformed {fmt} stream"
            out.append(Sample(fmt, f"strategy-{i}", bytes(m.data), m.rule, m.expected,
                              f"{desc} (strategies.generate_malformed, seed {seed})",
                              {"seed": seed, **({"family": family} if family else {})}))
    return out


def _as_bytes(value) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    data = getattr(value, "data", None)
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    raise TypeError(f"strategies.valid drew a {type(value).__name__}, not bytes")
