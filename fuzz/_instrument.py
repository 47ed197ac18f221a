"""Coverage instrumentation for a target run as a program (imports nothing of the reference).

A target module imports the harness inside ``instrumented(__name__)``: run as
``python -m xenstream.fuzz.<target>``, every ``xenstream.reference`` and
``xenstream.corpus`` module is instrumented for libFuzzer's coverage feedback
as it is imported; imported by a test, nothing happens (atheris not needed).
"""

from __future__ import annotations

import contextlib

INSTRUMENTED = ("xenstream.reference", "xenstream.corpus")


def instrumented(module_name: str):
    if module_name != "__main__":
        return contextlib.nullcontext()
    import atheris

    return atheris.instrument_imports(include=list(INSTRUMENTED))
