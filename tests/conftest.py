"""Hypothesis settings profile for this project's tests: ``HYPOTHESIS_PROFILE``
(``ci`` by default, ``nightly`` for long runs); see strategies/settings.py."""

from xenstream.strategies import settings as _profiles

_profiles.load()
