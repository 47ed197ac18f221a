"""Fuzz target: structure-aware: valid xenopsd streams mutated record by record (decode and round-trip invariants).

Run: ``python -m xenstream.fuzz.mutate_xenopsd [libFuzzer flags] [corpus dirs]``; see fuzz/harness.py.
"""

from xenstream.fuzz._instrument import instrumented

with instrumented(__name__):
    from xenstream.fuzz.harness import mutate_target, main

FORMAT = "xenopsd"
TestOneInput = mutate_target(FORMAT)

if __name__ == "__main__":
    main(TestOneInput)
