"""Fuzz target: the legacy converter; what it writes, the reference verifier accepts.

Run: ``python -m xenstream.fuzz.convert_legacy [libFuzzer flags] [corpus dirs]``; see fuzz/harness.py.
"""

from xenstream.fuzz._instrument import instrumented

with instrumented(__name__):
    from xenstream.fuzz.harness import convert_legacy, main

FORMAT = "legacy"
TestOneInput = convert_legacy

if __name__ == "__main__":
    main(TestOneInput)
