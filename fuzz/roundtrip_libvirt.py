"""Fuzz target: decode-encode-decode round trip of libvirt streams.

Run: ``python -m xenstream.fuzz.roundtrip_libvirt [libFuzzer flags] [corpus dirs]``; see fuzz/harness.py.
"""

from xenstream.fuzz._instrument import instrumented

with instrumented(__name__):
    from xenstream.fuzz.harness import roundtrip_target, main

FORMAT = "libvirt"
TestOneInput = roundtrip_target(FORMAT)

if __name__ == "__main__":
    main(TestOneInput)
