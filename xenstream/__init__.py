"""xenstream-conformance: reference codecs, conformance suite and fuzz harness
for Xen's save/migration stream formats."""

import sys as _sys

__version__ = "0.1.0"


def _map_checkout() -> None:
    """Installed, the subpackages (reference, strategies, conformance, corpus,
    fuzz) live inside this package.  In a source checkout they are the
    repository's top-level folders, which ``pyproject.toml``'s
    ``[tool.setuptools] package-dir`` maps into this namespace; when this
    package is imported straight from a checkout (``python -m pytest`` or
    ``python -m xenstream`` at its root), the same table is read here and
    those folders, and only those, are made importable under their
    ``xenstream.`` names (``tests/`` and ``scripts/`` stay outside)."""
    import importlib.util
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        import tomllib

        with open(os.path.join(root, "pyproject.toml"), "rb") as f:
            project = tomllib.load(f)
    except (OSError, ValueError):
        return  # installed: no pyproject.toml beside this package
    if project.get("project", {}).get("name") != "xenstream-conformance":
        return
    dirs = project.get("tool", {}).get("setuptools", {}).get("package-dir", {})
    folders = {name: os.path.join(root, folder) for name, folder in dirs.items()
               if name.startswith(__name__ + ".") and name.count(".") == 1}

    class CheckoutFinder:
        """Finds ``xenstream.<sub>`` in the checkout's folder for it."""

        @staticmethod
        def find_spec(fullname, path=None, target=None):
            folder = folders.get(fullname)
            if folder is None:
                return None
            return importlib.util.spec_from_file_location(
                fullname, os.path.join(folder, "__init__.py"), submodule_search_locations=[folder])

    _sys.meta_path.append(CheckoutFinder)


_map_checkout()
