"""Fuzz target: decode-encode-decode round trip of legacy streams.

Run: ``python -m xenstream.fuzz.roundtrip_legacy [libFuzzer flags] [corpus dirs]``; see fuzz/harness.py.
"""

from xenstream.fuzz._instrument import instrumented

with instrumented(__name__):
    from xenstream.fuzz.harness import roundtrip_target, main

FORMAT = "legacy"
TestOneInput = roundtrip_target(FORMAT)

if __name__ == "__main__":
    main(TestOneInput)
