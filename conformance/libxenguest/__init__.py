"""Xen's own restore code, libxenguest's ``xc_domain_restore``, as a testee.

``fake_hypercalls.c`` (a fake hypervisor below libxenctrl, loaded with LD_PRELOAD),
``restore.c`` (a small driver), :mod:`.build` (compiling both for a Debian
release with ``cc``), :mod:`.state` (the restored domain against the stream)
and :mod:`.testee` (verdicts, the runner the pytest plugin uses).
``python -m xenstream.conformance.libxenguest FILE`` restores one stream and
says what happened (the replay command of a failing case).
"""
