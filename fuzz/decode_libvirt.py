"""Fuzz target: decoder of libvirt streams: returns or raises StreamError, and agrees with the streaming validator.

Run: ``python -m xenstream.fuzz.decode_libvirt [libFuzzer flags] [corpus dirs]``; see fuzz/harness.py.
"""

from xenstream.fuzz._instrument import instrumented

with instrumented(__name__):
    from xenstream.fuzz.harness import decode_target, main

FORMAT = "libvirt"
TestOneInput = decode_target(FORMAT)

if __name__ == "__main__":
    main(TestOneInput)
