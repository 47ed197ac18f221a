"""S-expressions as OCaml's Sexplib reads and writes them (xenopsd's Xenops record).

:func:`parse` reads exactly one s-expression from octets, as ``Sexp.of_string``
does: atoms (unquoted, or quoted with Sexplib's escapes ``\\n \\t \\b \\r \\\\
\\" \\' \\DDD \\xHH`` and a backslash before a line break), lists, and ``;``
line comments, ``#| |#`` block comments and ``#;`` s-expression comments
between them; anything but blanks after it is an error.  :func:`dumps` writes
what ``Sexp.to_string`` (the machine format) writes.  An atom is ``bytes``, a
list a ``list``.  Nesting is bounded (:data:`MAX_DEPTH`): the parser is not
recursive.
"""

from __future__ import annotations

MAX_DEPTH = 10_000
_BLANK = b" \t\n\r\x0c"
_SPECIAL = frozenset(b' \t\n\r\x0c()";')
#: The octets a quoted atom writes as a backslash escape of their own (others below 0x20 or
#: from 0x7F on are written ``\NNN``, in decimal).
_ESCAPES = {0x22: b'\\"', 0x5C: b"\\\\", 0x0A: b"\\n", 0x09: b"\\t", 0x08: b"\\b", 0x0D: b"\\r"}
_SIMPLE_ESCAPES = {ord("n"): b"\n", ord("t"): b"\t", ord("b"): b"\b", ord("r"): b"\r", ord("\\"): b"\\",
                   ord('"'): b'"', ord("'"): b"'", ord(" "): b" "}


class SexpError(ValueError):
    def __init__(self, offset: int, message: str):
        super().__init__(f"{message} at octet {offset}")
        self.offset = offset
        self.message = message


def _skip(text: bytes, i: int) -> int:
    """Past blanks and comments."""
    n = len(text)
    while i < n:
        c = text[i]
        if c in _BLANK:
            i += 1
        elif c == 0x3B:  # ;
            j = text.find(b"\n", i)
            i = n if j < 0 else j + 1
        elif text.startswith(b"#|", i):
            depth, j = 1, i + 2
            while depth:
                if j >= n:
                    raise SexpError(i, "unterminated block comment")
                if text.startswith(b"#|", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith(b"|#", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            i = j
        else:
            return i
    return i


def _quoted(text: bytes, i: int) -> tuple[bytes, int]:
    """The atom of the quoted string at ``text[i] == '"'``, and where it ends."""
    out = bytearray()
    j, n = i + 1, len(text)
    while True:
        k = j
        while k < n and text[k] not in (0x22, 0x5C):
            k += 1
        out += text[j:k]
        if k >= n:
            raise SexpError(i, "unterminated quoted string")
        if text[k] == 0x22:
            return bytes(out), k + 1
        if k + 1 >= n:
            raise SexpError(i, "unterminated quoted string")
        e = text[k + 1]
        if e in _SIMPLE_ESCAPES:
            out += _SIMPLE_ESCAPES[e]
            j = k + 2
        elif e in (0x0A, 0x0D):  # a line continuation: the break and the next line's blanks
            j = k + 2 + (e == 0x0D and text[k + 2:k + 3] == b"\n")
            while j < n and text[j] in b" \t":
                j += 1
        elif 0x30 <= e <= 0x39:
            digits = text[k + 1:k + 4]
            if len(digits) < 3 or not digits.isdigit() or int(digits) > 255:
                raise SexpError(k, "bad decimal escape")
            out.append(int(digits))
            j = k + 4
        elif e == 0x78:  # x
            digits = text[k + 2:k + 4]
            try:
                out.append(int(digits, 16))
            except ValueError:
                raise SexpError(k, "bad hexadecimal escape") from None
            if len(digits) < 2:
                raise SexpError(k, "bad hexadecimal escape")
            j = k + 4
        else:  # Sexplib keeps an unknown escape as it is
            out += text[k:k + 2]
            j = k + 2


def parse(text: bytes):
    """The one s-expression ``text`` holds; :class:`SexpError` otherwise."""
    text = bytes(text)
    n = len(text)
    stack: list[tuple[list, int]] = []
    top: list = []
    skip_next: list[bool] = [False]   # per level: a #; comment is waiting for its s-expression
    i = _skip(text, 0)

    def put(value) -> None:
        if skip_next[-1]:
            skip_next[-1] = False
        else:
            (stack[-1][0] if stack else top).append(value)

    while i < n:
        c = text[i]
        if c == 0x28:  # (
            if len(stack) >= MAX_DEPTH:
                raise SexpError(i, "nesting too deep")
            stack.append(([], i))
            skip_next.append(False)
            i += 1
        elif c == 0x29:  # )
            if not stack:
                raise SexpError(i, "unexpected ')'")
            if skip_next.pop():
                raise SexpError(i, "'#;' without an s-expression")
            value, _ = stack.pop()
            put(value)
            i += 1
        elif c == 0x22:
            atom, i = _quoted(text, i)
            put(atom)
        elif text.startswith(b"#;", i):
            skip_next[-1] = True
            i += 2
        elif text.startswith(b"|#", i):
            raise SexpError(i, "'|#' outside a block comment")
        else:
            j = i
            while j < n and text[j] not in _SPECIAL and not text.startswith(b"#|", j) \
                    and not text.startswith(b"|#", j):
                j += 1
            put(text[i:j])
            i = j
        if not stack and top and not skip_next[-1]:
            end = _skip(text, i)
            if end < n:
                raise SexpError(end, "more than one s-expression")
            return top[0]
        i = _skip(text, i)
    if stack:
        raise SexpError(stack[-1][1], "unclosed '('")
    if skip_next[-1]:
        raise SexpError(n, "'#;' without an s-expression")
    raise SexpError(n, "no s-expression")


def _needs_quotes(atom: bytes) -> bool:
    if not atom:
        return True
    if any(c in _SPECIAL or c < 0x20 or c >= 0x7F or c == 0x5C for c in atom):
        return True
    return b"#|" in atom or b"|#" in atom or atom.startswith(b"#;")


def _quote(atom: bytes) -> bytes:
    out = bytearray(b'"')
    for c in atom:
        escape = _ESCAPES.get(c)
        if escape is not None:
            out += escape
        elif c < 0x20 or c >= 0x7F:
            out += b"\\%03d" % c
        else:
            out.append(c)
    return bytes(out + b'"')


def dumps(value) -> bytes:
    """The machine format: no blank where a parenthesis or a quote separates two items."""
    if isinstance(value, (bytes, bytearray)):
        return _quote(bytes(value)) if _needs_quotes(bytes(value)) else bytes(value)
    out = bytearray(b"(")
    last_bare = False
    for item in value:
        piece = dumps(item)
        bare = isinstance(item, (bytes, bytearray)) and not piece.startswith(b'"')
        if last_bare and bare:
            out += b" "
        out += piece
        last_bare = bare
    return bytes(out + b")")
