"""Wires the conformance plugin for ``pytest conformance``.

``pytest_plugins`` is not allowed in a non-root conftest, so the hooks are
imported here instead; see :mod:`xenstream.conformance.plugin` for the options.
"""

from xenstream.conformance.plugin import (  # noqa: F401
    conformance,
    pytest_addoption,
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_generate_tests,
    pytest_report_header,
    pytest_runtest_logreport,
    pytest_sessionstart,
    pytest_sessionfinish,
    pytest_terminal_summary,
    pytest_unconfigure,
)
