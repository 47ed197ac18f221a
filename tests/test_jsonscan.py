"""reference/jsonscan.py: its verdict is that of ``json.loads(data.decode("utf-8"))``,
depth aside, whatever the chunks it is fed in."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import example, given, settings, strategies as st

from xenstream.reference import jsonscan
from xenstream.reference.jsonscan import JsonScan, JsonSyntaxError


def loads_accepts(data: bytes) -> bool:
    try:
        json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return False
    return True


def scan_accepts(data: bytes, cuts: list[int]) -> bool:
    """Fed in pieces cut at ``cuts`` (positions, any order, any repeats)."""
    scan = JsonScan()
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    try:
        for a, b in zip(bounds, bounds[1:]):
            scan.feed(data[a:b])
        scan.close()
    except JsonSyntaxError as exc:
        assert 0 <= exc.offset <= len(data)
        return False
    return True


def one_octet_pieces(data: bytes) -> bool:
    return scan_accepts(data, list(range(len(data))))


_scalars = (st.none() | st.booleans() | st.integers() | st.integers(-10**60, 10**60)
            | st.floats(allow_nan=True, allow_infinity=True) | st.text())
json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30)
dump_kwargs = st.fixed_dictionaries({
    "ensure_ascii": st.booleans(),
    "indent": st.none() | st.integers(0, 4) | st.sampled_from(["\t", " \r\n", ""]),
    "separators": st.none() | st.sampled_from([(",", ":"), (", ", ": "), (" ,\n", " :\t"), (",\r", ":  ")]),
    "sort_keys": st.booleans(),
})
cut_lists = st.lists(st.integers(0, 1 << 16), max_size=12)


@settings(max_examples=300, deadline=None)
@given(json_values, dump_kwargs, cut_lists)
def test_serialised_json_is_accepted(value, kwargs, cuts):
    data = json.dumps(value, **kwargs).encode("utf-8")
    assert loads_accepts(data)
    assert scan_accepts(data, cuts)
    assert scan_accepts(b" \t\r\n" + data + b"\n ", cuts)


_alphabet = b' \t\n\r[]{},:"\\/0123456789-+.eEtrufalsnNIiyb\x00\x1f\x7f\xc3\xa9\xe2\x82\xac\xef\xbb\xbf\xed\xa0\x80\xf0\x9f\x98\x80\xff\xc0'


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=40) | st.lists(st.sampled_from(_alphabet), max_size=40).map(bytes), cut_lists)
@example(b"\xef\xbb\xbf1", [])           # a BOM
@example(b'"\\ud800"', [3])             # a lone surrogate escape
@example(b'{"a": 1, "a": 2}', [])       # duplicate keys
@example(b"-Infinity", [1, 2])
@example(b"01", [])
@example(b"1.", [])
@example(b'"\xe2\x82', [])              # UTF-8 cut at the end
@example(b"\xed\xa0\x80", [1])          # an encoded surrogate: bad UTF-8
@example(b"\x0c1", [])                  # form feed is not whitespace
@example(b'"\x7f"', [])
def test_any_octets_get_the_verdict_of_json_loads(data, cuts):
    expected = loads_accepts(data)
    assert scan_accepts(data, cuts) == expected
    assert one_octet_pieces(data) == expected


_seeds = [
    b'{"name": "guest", "a": [1, -2.5e-3, 0, -0, 1E+9, true, false, null, NaN, Infinity, -Infinity], "b": {}}',
    b'[" \\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\ud83d\\ude00 \\udc00", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"]',
    b'  {"x" : [ [ ] , { } , "" ] }  ',
    b"12345678901234567890.125e-7",
]


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(_seeds) | json_values.map(lambda v: json.dumps(v).encode())))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete"]))
        at = draw(st.integers(0, len(data)))
        if op == "flip" and data:
            data[at % len(data)] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[at % len(data)] = draw(st.sampled_from(_alphabet))
        elif op == "cut":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=3) | st.sampled_from(_alphabet).map(lambda c: bytes([c])))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 3))]
    return bytes(data)


@settings(max_examples=800, deadline=None)
@given(mutated(), cut_lists)
def test_mutated_json_gets_the_verdict_of_json_loads(data, cuts):
    expected = loads_accepts(data)
    assert scan_accepts(data, cuts) == expected
    assert one_octet_pieces(data) == expected


@pytest.mark.parametrize("digits", [1, 4299, 4300, 4301, 10_000])
@pytest.mark.parametrize("form", ["{}", "-{}", "[{}]", "{}.5", "{}e1"])
def test_integers_past_the_digit_limit_refused_as_json_loads_does(digits, form):
    data = form.format("7" * digits).encode()
    assert scan_accepts(data, [3, 4300]) == loads_accepts(data)


@pytest.mark.parametrize("data, ok", [
    (b"[" * 100_000 + b"]" * 100_000, True),
    (b'{"k":' * 100_000 + b'"v"' + b"}" * 100_000, True),
    (b"[{\"a\": " * 50_000 + b"0" + b"}]" * 50_000, True),
    (b"[" * 100_000 + b"]" * 99_999, False),
    (b"[" * 100_000 + b"]" * 100_001, False),
    (b"[" * 100_000 + b"}" + b"]" * 99_999, False),
    (b"[" * 100_000 + b"1,]" + b"]" * 99_999, False),
])
def test_deep_nesting_has_no_depth_limit(data, ok):
    with pytest.raises(RecursionError):  # what json.loads cannot do
        json.loads(data)
    try:
        jsonscan.check(data, chunk=4099)
    except JsonSyntaxError:
        assert not ok
    else:
        assert ok
    if data.startswith(b"[" * 100_000 + b"]"):
        scan = JsonScan()
        scan.feed(data[:150_000])
        assert scan.depth == 50_000  # one octet a level


def test_error_offsets_name_the_octet():
    cases = {b'[1, 2, x]': 7, b'["\xc3\xa9", \xff]': 7, b'{"a" 1}': 5, b'"ab\x01"': 3, b"[1,": 3, b"\xc3": 0,
             b'["\xe2\x82\xac",]': 7, b"1 2": 2, b"[1.]": 3}
    for data, offset in cases.items():
        for cuts in ([], list(range(len(data)))):
            scan = JsonScan()
            with pytest.raises(JsonSyntaxError) as exc:
                bounds = sorted({0, len(data), *cuts})
                for a, b in zip(bounds, bounds[1:]):
                    scan.feed(data[a:b])
                scan.close()
            assert exc.value.offset == offset, (data, cuts)
            assert f"at octet {offset}" in str(exc.value)
        with pytest.raises(JsonSyntaxError):  # refused once, refused for good
            scan.feed(b" ")


def test_finite_floats_round_trip_as_accepted():
    for x in (0.0, -0.0, 1e308, 5e-324, math.pi):
        assert scan_accepts(repr(x).encode(), [1])
