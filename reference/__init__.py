"""Reference codecs and validators for Xen's save/migration stream formats.

Each format lives in its own module and owns its record layouts, its typed
values and its rules; the machinery they share lives in:

* :mod:`.rules`   - the rule catalogue (id, spec section, severity);
* :mod:`.errors`  - the single error hierarchy and the :class:`Finding` type;
* :mod:`.layout`  - byte-order aware, precompiled ``struct.Struct`` layouts;
* :mod:`.source`  - a forward-only reader that never trusts a length field;
* :mod:`.framing` - the 8-octet aligned ``type, length, body, padding`` records
  that the libxc, libxl and xenstore streams have in common;
* :mod:`.checker` - collects findings for a validation run under a role.
"""
