"""The conformance suite: every case, every strategy, against one implementation.

Run ``pytest conformance`` (the built-in reference) or
``pytest conformance --impl=./verify-stream-v2 --formats=libxc,libxl,xl``;
see ``pytest conformance --help`` (group "xenstream") for the options and
``conformance/plugin.py`` for how cases become tests.
"""

import pytest


def test_case(case, conformance, request):
    """One stream from the examples, the corpus or a truncated prefix."""
    conformance.check(request.node, case)


def test_strategy(strategy_target, conformance, request):
    """A Hypothesis property: generated streams, shrunk and saved on failure."""
    conformance.check_strategy(request.node, strategy_target)


def test_not_applicable(skipped_format):
    """Formats (or kinds) the implementation does not take: skipped once each."""
    name, reason = skipped_format
    pytest.skip(reason)
