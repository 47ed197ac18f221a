"""C xenstored (or any xenstored that restores a live update) as a testee.

``pytest conformance --impl-kind xenstored --impl=PATH`` gives every
live-update stream of the suite to a real daemon with no hypervisor, and
checks the store it restored.  The parts, one concept each:

:mod:`.daemon`      starts a daemon in a private run dir, for one case, under the
                    LD_PRELOAD fake Xen libraries (``fake_xenlibs.c``) it builds with ``cc``
:mod:`.wire`        a client of the xenstore wire protocol
:mod:`.state`       the store a stream describes, the store a daemon holds, their diff
:mod:`.runner`      judges a case: verdict, then the restored state (``wrong-state``)
:mod:`.dumps`       real live-update dumps (the daemon as a writer) and round trips
"""
