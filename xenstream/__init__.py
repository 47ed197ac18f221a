"""xenstream-conformance: reference codecs, conformance suite and fuzz harness
for Xen's save/migration stream formats."""

__version__ = "0.1.0"
