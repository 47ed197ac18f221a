"""A checkout runs the conformance suite without being installed: load its
pytest plugin here, as an install's ``pytest11`` entry point does (the entry
point has the module's name, so an installed copy is not registered twice)."""

pytest_plugins = ["xenstream.conformance.plugin"]
