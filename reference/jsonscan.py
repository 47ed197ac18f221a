"""A streaming JSON syntax checker: fed octets in chunks of any size, it decides whether
the whole would be accepted by ``json.loads(data.decode("utf-8"))`` with Python's
defaults, in constant memory apart from its nesting stack (one octet a level) and
without recursion, so it has no depth limit (``json.loads`` raises RecursionError).

Its verdict is that of ``json.loads`` of the decoded text: invalid UTF-8 refused exactly
as ``bytes.decode("utf-8")`` refuses it (an incremental decoder), a leading U+FEFF
refused, only space, tab, LF and CR as whitespace, ``NaN``, ``Infinity`` and
``-Infinity`` accepted, control characters in strings refused (``strict=True``), lone
surrogate escapes and duplicate keys accepted, and an integer of more digits than
``sys.get_int_max_str_digits()`` refused (``int()`` refuses to convert it).

Runs of whitespace, plain string characters and digits, and whole short tokens, are
consumed by regular expressions rather than a Python step per character.
"""

from __future__ import annotations

import codecs
import re
import sys

__all__ = ["JsonScan", "JsonSyntaxError", "check"]


class JsonSyntaxError(ValueError):
    """Refused: ``offset`` is the octet offset of the first octet found wrong (the
    length of the text for a text that ends too early)."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} at octet {offset}")
        self.reason = message
        self.offset = offset


_INT_MAX_DIGITS = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 0

# states
_VALUE, _VALUE_OR_CLOSE, _KEY, _KEY_OR_CLOSE, _COLON, _AFTER, _STRING, _ESCAPE, _UHEX, \
    _NUMBER, _LITERAL = range(11)
# number sub-states
_N_MINUS, _N_ZERO, _N_INT, _N_DOT, _N_FRAC, _N_E, _N_ESIGN, _N_EXP = range(8)
_N_ACCEPTING = (_N_ZERO, _N_INT, _N_FRAC, _N_EXP)

_WS = re.compile(r"[ \t\n\r]*")
_PLAIN = re.compile(r'[^"\\\x00-\x1f]*')
_DIGITS = re.compile(r"[0-9]*")
_HEX = "0123456789abcdefABCDEF"
_SIMPLE_ESCAPES = '"\\/bfnrt'
_LITERALS = {"t": "true", "f": "false", "n": "null", "N": "NaN", "I": "Infinity"}
# A whole value token not touching the chunk's end (it is then complete), or a
# structural character, after optional whitespace.
_TOKEN = re.compile(r'[ \t\n\r]*(?:'
                    r'("[^"\\\x00-\x1f]*(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*)*")'
                    r'|(-?(?:0|([1-9][0-9]*))(\.[0-9]+)?([eE][-+]?[0-9]+)?|true|false|null|NaN|Infinity|-Infinity)'
                    r'(?=[^0-9a-zA-Z.+-])'
                    r')')
_KEYTOKEN = re.compile(r'[ \t\n\r]*"[^"\\\x00-\x1f]*(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*)*"'
                       r'[ \t\n\r]*:')


class JsonScan:
    """Feed octets with :meth:`feed`, then call :meth:`close`; either raises
    :class:`JsonSyntaxError` at the first fault found."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self._fed = 0            # octets fed
        self._base = 0           # octets before the current text
        self._stack = bytearray()  # b"[" / b"{" per open level
        self._state = _VALUE
        self._key = False        # the string being read is an object key
        self._nstate = 0
        self._ndigits = 0        # integer digits of the number being read
        self._nint = True        # the number so far has no fraction or exponent
        self._literal = ""       # rest of the literal being read
        self._hex = 0            # hex digits still due in a \\u escape
        self._error: JsonSyntaxError | None = None
        self._text = ""

    @property
    def depth(self) -> int:
        return len(self._stack)

    def feed(self, data: bytes) -> None:
        if self._error:
            raise self._error
        pending = len(self._decoder.getstate()[0])
        try:
            text = self._decoder.decode(data)
        except UnicodeDecodeError as exc:
            self._fail(f"invalid UTF-8: {exc.reason}", self._fed - pending + exc.start, octets=True)
        self._base = self._fed - pending
        self._fed += len(data)
        if text:
            self._scan(text)

    def close(self) -> None:
        if self._error:
            raise self._error
        pending = len(self._decoder.getstate()[0])
        try:
            self._decoder.decode(b"", True)
        except UnicodeDecodeError as exc:
            self._fail(f"invalid UTF-8: {exc.reason}", self._fed - pending + exc.start, octets=True)
        if self._state == _NUMBER:
            self._text = ""
            self._base = self._fed
            self._end_number("", 0)
        if self._state != _AFTER or self._stack:
            self._fail("unexpected end of text", self._fed, octets=True)

    def _fail(self, message: str, where: int, *, octets: bool = False) -> None:
        offset = where if octets else self._base + len(self._text[:where].encode("utf-8"))
        self._error = JsonSyntaxError(message, offset)
        raise self._error

    def _end_number(self, s: str, i: int) -> None:
        if self._nstate not in _N_ACCEPTING:
            self._fail("incomplete number", i)
        if self._nint and _INT_MAX_DIGITS and self._ndigits > _INT_MAX_DIGITS:
            self._fail(f"integer of more than {_INT_MAX_DIGITS} digits", i)
        self._state = _AFTER

    def _close_level(self, c: str, i: int) -> None:
        if not self._stack or self._stack[-1] != (0x5B if c == "]" else 0x7B):
            self._fail(f"unexpected {c!r}", i)
        self._stack.pop()
        self._state = _AFTER

    def _scan(self, s: str) -> None:  # noqa: C901 - one loop, states inline for speed
        self._text = s
        n = len(s)
        i = 0
        state = self._state
        stack = self._stack
        ws = _WS.match
        token = _TOKEN.match
        keytoken = _KEYTOKEN.match
        while i < n:
            if state == _STRING:
                i = _PLAIN.match(s, i).end()
                if i >= n:
                    break
                c = s[i]
                i += 1
                if c == '"':
                    state = _COLON if self._key else _AFTER
                elif c == "\\":
                    state = _ESCAPE
                else:
                    self._state = state
                    self._fail("control character in string", i - 1)
                continue
            if state == _AFTER:
                i = ws(s, i).end()
                if i >= n:
                    break
                c = s[i]
                if not stack:
                    self._fail("extra data", i)
                top = stack[-1]
                if c == ",":
                    i += 1
                    state = _VALUE if top == 0x5B else _KEY
                elif c == "]" or c == "}":
                    self._close_level(c, i)
                    i += 1
                    state = _AFTER
                else:
                    self._fail(f"expecting ',' or {']' if top == 0x5B else '}'!r}", i)
                continue
            if state == _VALUE or state == _VALUE_OR_CLOSE:
                m = token(s, i)
                if m:  # a whole string, number or literal, ending before the text does
                    if m.group(1) is None and m.group(3) is not None and m.group(4) is None \
                            and m.group(5) is None and _INT_MAX_DIGITS and len(m.group(3)) > _INT_MAX_DIGITS:
                        self._fail(f"integer of more than {_INT_MAX_DIGITS} digits", m.start(3))
                    i = m.end()
                    state = _AFTER
                    continue
                i = ws(s, i).end()
                if i >= n:
                    break
                c = s[i]
                if c == '"':
                    i += 1
                    self._key = False
                    state = _STRING
                elif c == "[":
                    i += 1
                    stack.append(0x5B)
                    state = _VALUE_OR_CLOSE
                elif c == "{":
                    i += 1
                    stack.append(0x7B)
                    state = _KEY_OR_CLOSE
                elif c == "]" and state == _VALUE_OR_CLOSE:
                    self._close_level(c, i)
                    i += 1
                    state = _AFTER
                elif c == "-" or "0" <= c <= "9":
                    self._ndigits = 0
                    self._nint = True
                    if c == "-":
                        self._nstate = _N_MINUS
                    elif c == "0":
                        self._nstate, self._ndigits = _N_ZERO, 1
                    else:
                        self._nstate, self._ndigits = _N_INT, 1
                    i += 1
                    state = _NUMBER
                elif c in _LITERALS:
                    self._literal = _LITERALS[c][1:]
                    i += 1
                    state = _LITERAL
                else:
                    self._fail("expecting value", i)
                continue
            if state == _KEY or state == _KEY_OR_CLOSE:
                m = keytoken(s, i)
                if m:  # a whole key and its colon
                    i = m.end()
                    state = _VALUE
                    continue
                i = ws(s, i).end()
                if i >= n:
                    break
                c = s[i]
                if c == '"':
                    i += 1
                    self._key = True
                    state = _STRING
                elif c == "}" and state == _KEY_OR_CLOSE:
                    self._close_level(c, i)
                    i += 1
                    state = _AFTER
                else:
                    self._fail("expecting property name enclosed in double quotes", i)
                continue
            if state == _COLON:
                i = ws(s, i).end()
                if i >= n:
                    break
                if s[i] != ":":
                    self._fail("expecting ':' delimiter", i)
                i += 1
                state = _VALUE
                continue
            if state == _ESCAPE:
                c = s[i]
                i += 1
                if c == "u":
                    self._hex = 4
                    state = _UHEX
                elif c in _SIMPLE_ESCAPES:
                    state = _STRING
                else:
                    self._fail("invalid \\escape", i - 1)
                continue
            if state == _UHEX:
                if s[i] not in _HEX:
                    self._fail("invalid \\uXXXX escape", i)
                i += 1
                self._hex -= 1
                if not self._hex:
                    state = _STRING
                continue
            if state == _LITERAL:
                want = self._literal
                got = s[i:i + len(want)]
                if not want.startswith(got):
                    self._fail("expecting value", i)
                i += len(got)
                self._literal = want = want[len(got):]
                if not want:
                    state = _AFTER
                continue
            # _NUMBER
            ns = self._nstate
            c = s[i]
            if ns == _N_INT or ns == _N_FRAC or ns == _N_EXP:
                j = _DIGITS.match(s, i).end()
                if ns == _N_INT:
                    self._ndigits += j - i
                i = j
                if i >= n:
                    break
                c = s[i]
                if ns == _N_EXP or (ns == _N_FRAC and c not in "eE") or (ns == _N_INT and c not in ".eE"):
                    self._state = state
                    self._end_number(s, i)
                    state = _AFTER
                    continue
            if ns == _N_MINUS:
                if c == "0":
                    self._nstate, self._ndigits = _N_ZERO, 1
                elif "1" <= c <= "9":
                    self._nstate, self._ndigits = _N_INT, 1
                elif c == "I":
                    self._literal = "nfinity"
                    state = _LITERAL
                else:
                    self._fail("expecting value", i)
                i += 1
            elif ns == _N_ZERO or ns == _N_INT or ns == _N_FRAC:
                if c == "." and ns != _N_FRAC:
                    self._nstate = _N_DOT
                    self._nint = False
                    i += 1
                elif c == "e" or c == "E":
                    self._nstate = _N_E
                    self._nint = False
                    i += 1
                else:
                    self._state = state
                    self._end_number(s, i)
                    state = _AFTER
            elif ns == _N_DOT:
                if not "0" <= c <= "9":
                    self._fail("incomplete number", i)
                self._nstate = _N_FRAC
                i += 1
            elif ns == _N_E:
                if c == "+" or c == "-":
                    self._nstate = _N_ESIGN
                elif "0" <= c <= "9":
                    self._nstate = _N_EXP
                else:
                    self._fail("incomplete number", i)
                i += 1
            else:  # _N_ESIGN
                if not "0" <= c <= "9":
                    self._fail("incomplete number", i)
                self._nstate = _N_EXP
                i += 1
        self._state = state


def check(data: bytes, chunk: int = 1 << 16) -> None:
    """Raise :class:`JsonSyntaxError` unless ``json.loads(data.decode("utf-8"))``
    would accept ``data`` (depth aside)."""
    scan = JsonScan()
    view = memoryview(data)
    for at in range(0, len(data), chunk):
        scan.feed(view[at:at + chunk])
    scan.close()
