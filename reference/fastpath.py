"""The one switch of the validation fast paths.

Two readers pass over runs of records that obey every rule without the
per-record parsers: libxc's PAGE_DATA (``LibxcReader._page_data_run``) and
xenstore's committed NODE_DATA (``XenstoreReader._node_data_run``).  Each
takes a record only when the predicates the rules themselves use say that no
rule applies, so a fast path can skip work, never a finding;
``tests/test_fastpath.py`` runs every example, every corpus file and a sample
of every strategy with the switch on and off and requires the same findings.

``XENSTREAM_FAST_PATH=0`` in the environment turns them off for a process;
:func:`disabled` for a block (a reader looks at :data:`ENABLED` when it starts).
"""

from __future__ import annotations

import contextlib
import os

ENABLED: bool = os.environ.get("XENSTREAM_FAST_PATH", "1") != "0"


@contextlib.contextmanager
def disabled():
    """Run the block with both fast paths off."""
    global ENABLED
    saved, ENABLED = ENABLED, False
    try:
        yield
    finally:
        ENABLED = saved
