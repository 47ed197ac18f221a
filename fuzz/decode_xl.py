"""Fuzz target: decoder of xl streams: returns or raises StreamError, and agrees with the streaming validator.

Run: ``python -m xenstream.fuzz.decode_xl [libFuzzer flags] [corpus dirs]``; see fuzz/harness.py.
"""

from xenstream.fuzz._instrument import instrumented

with instrumented(__name__):
    from xenstream.fuzz.harness import decode_target, main

FORMAT = "xl"
TestOneInput = decode_target(FORMAT)

if __name__ == "__main__":
    main(TestOneInput)
