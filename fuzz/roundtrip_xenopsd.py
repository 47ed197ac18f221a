"""Fuzz target: decode-encode-decode round trip of xenopsd streams.

Run: ``python -m xenstream.fuzz.roundtrip_xenopsd [libFuzzer flags] [corpus dirs]``; see fuzz/harness.py.
"""

from xenstream.fuzz._instrument import instrumented

with instrumented(__name__):
    from xenstream.fuzz.harness import roundtrip_target, main

FORMAT = "xenopsd"
TestOneInput = roundtrip_target(FORMAT)

if __name__ == "__main__":
    main(TestOneInput)
