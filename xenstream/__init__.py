"""xenstream-conformance: reference codecs, conformance suite and fuzz harness
for Xen's save/migration stream formats."""

import os as _os

__version__ = "0.1.0"

# Installed, the subpackages (reference, strategies, conformance, corpus, fuzz)
# live inside this package.  In a source checkout they are the repository's
# top-level folders, which setuptools maps into this namespace; when this
# package is imported straight from a checkout (``python -m pytest`` or
# ``python -m xenstream`` at the repository root), look for them there too.
_checkout = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_checkout, "pyproject.toml")) and _os.path.isfile(
        _os.path.join(_checkout, "reference", "rules.py")):
    __path__.append(_checkout)  # noqa: F821 - __path__ is set for packages
