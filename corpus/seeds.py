"""Strategy seeds for the corpus: streams drawn from the Hypothesis strategies with fixed seeds.

The strategies package (``xenstream.strategies``) runs the same builders as
its Hypothesis strategies ``valid(format)`` and ``malformed(format)`` under a
seeded ``random.Random`` (``generate_valid``, ``generate_malformed``, what
``xenstream sample`` uses): a fixed seed per draw makes each draw repeatable,
so the corpus build stays byte for byte deterministic.  A draw that fails
gives a note (nothing is written for it).
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


def strategy_samples(notes: list[str]) -> list[Sample]:
    import xenstream.strategies as mod

    out: list[Sample] = []
    for fi, fmt in enumerate(mf.FORMATS):
        for i in range(VALID_PER_FORMAT):
            seed = BASE_SEED + fi * 100 + i
            try:
                value = mod.generate_valid(fmt, random.Random(seed))
            except Exception as exc:  # noqa: BLE001
                notes.append(f"strategies: {fmt} valid seed {seed}: {type(exc).__name__}: {exc}")
                continue
            data = value.data
            out.append(Sample(fmt, f"strategy-{i}", data, None, "accept",
                              f"valid {fmt} stream from strategies.generate_valid (seed {seed})", {"seed": seed}))
        for i in range(MALFORMED_PER_FORMAT):
            seed = BASE_SEED + fi * 100 + 50 + i
            try:
                m = mod.generate_malformed(fmt, random.Random(seed))
            except Exception as exc:  # noqa: BLE001
                notes.append(f"strategies: {fmt} malformed seed {seed}: {type(exc).__name__}: {exc}")
                continue
            desc = m.description or f"malformed {fmt} stream"
            out.append(Sample(fmt, f"strategy-{i}", m.data, m.rule, m.expected,
                              f"{desc} (strategies.generate_malformed, seed {seed})",
                              {"seed": seed, **({"family": m.family} if m.family else {})}))
    return out
