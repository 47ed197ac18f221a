"""Fuzz target: structure-aware: valid libvirt streams mutated record by record (decode and round-trip invariants).

Run: ``python -m xenstream.fuzz.mutate_libvirt [libFuzzer flags] [corpus dirs]``; see fuzz/harness.py.
"""

from xenstream.fuzz._instrument import instrumented

with instrumented(__name__):
    from xenstream.fuzz.harness import mutate_target, main

FORMAT = "libvirt"
TestOneInput = mutate_target(FORMAT)

if __name__ == "__main__":
    main(TestOneInput)
