"""Part of xenstream-conformance; see docs/architecture.md."""
