"""Properties of the control protocol, checked with hypothesis, most against a real socket.

- any bytes a client sends get exactly one valid answer line, or a close; the server lives on
- any valid request goes there and back unchanged, paths with newlines, U+2028, control
  characters and the lone surrogates of a path that is not UTF-8
- the parser never fails with anything but a one-line ProtocolError
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.control import OPS, ControlServer, ProtocolError, call, encode, make_request, parse_request, parse_response
from monitor.control.protocol import MAX_METHOD, MAX_PATHS, MAX_PROMPT, MAX_SECONDS
from test_control import allow_all, echo, exchange

MODEST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def server_path():
    """One server for every example: what one example does must not spoil the next."""
    folder = Path(tempfile.mkdtemp(prefix="vmc-"))
    server = ControlServer(folder / "c.sock", echo, allow_all)
    server.start()
    yield server.path
    server.close()
    shutil.rmtree(folder, ignore_errors=True)


# Characters that break naive framing or decoding, among all the others; U+DC80..U+DCFF are the
# bytes of a path that is not UTF-8, as os.fsdecode gives them. No other surrogate: no field takes
# one (a high one before a low one is one character once through JSON, "\ud800\udc00").
awkward = st.one_of(st.characters(codec="utf-8"), st.sampled_from("\n\r\u2028\u2029\u0085\"\\\t\x1b{}[]"),
                    st.integers(0xDC80, 0xDCFF).map(chr))
printable = st.characters(codec="utf-8", exclude_categories=("C", "Z"), include_characters=" ")
texts = st.text(awkward, max_size=30)
paths = texts.map(lambda text: "/" + text.replace("\0", ""))
seconds = st.one_of(st.integers(0, MAX_SECONDS), st.floats(0, MAX_SECONDS, allow_nan=False))

valid_requests = st.one_of(
    st.sampled_from([("hello", {}), ("resume", {}), ("reload", {})]),
    st.builds(lambda prompt, answer: ("answer", {"prompt": prompt, "answer": answer}),
              st.integers(1, MAX_PROMPT), st.sampled_from(["reclaim", "dismiss"])),
    st.fixed_dictionaries({}, optional={
        "method": st.text(printable, min_size=1, max_size=MAX_METHOD),
        "paths": st.lists(paths, max_size=MAX_PATHS),
        "dry_run": st.booleans(),
    }).map(lambda fields: ("reclaim", fields)),
    st.builds(lambda op, s: (op, {"seconds": s}), st.sampled_from(["snooze", "pause"]), seconds),
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
# Objects that look like requests: a real op, real and made-up field names, values of any type.
request_like = st.dictionaries(
    st.sampled_from(["op", "prompt", "answer", "method", "paths", "dry_run", "seconds"]) | texts,
    json_values | st.sampled_from(list(OPS)), max_size=5,
)


def _mangled(line: bytes, data: st.DataObject) -> bytes:
    cut = data.draw(st.integers(0, len(line)))
    return line[:cut] + data.draw(st.binary(max_size=8)) + line[cut:]


junk = st.one_of(
    st.binary(max_size=512),
    texts.map(lambda text: text.encode("utf-8", "surrogatepass")),
    json_values.map(lambda value: json.dumps(value).encode()),
    request_like.map(lambda value: json.dumps(value).encode()),
)


@MODEST
@given(data=junk, newline=st.booleans())
def test_any_bytes_get_one_valid_answer_line_or_a_close(server_path, data, newline):
    raw = exchange(server_path, data + (b"\n" if newline else b""))
    if raw:
        assert raw.endswith(b"\n") and raw.count(b"\n") == 1, raw[:200]
        parse_response(raw)
    assert call(server_path, "hello")["op"] == "hello"


@MODEST
@given(data=st.data(), request=valid_requests)
def test_a_mangled_request_gets_one_valid_answer_line_or_a_close(server_path, data, request):
    op, fields = request
    raw = exchange(server_path, _mangled(encode({"op": op, **fields}), data))
    if raw:
        assert raw.endswith(b"\n") and raw.count(b"\n") == 1, raw[:200]
        parse_response(raw)


@MODEST
@given(request=valid_requests)
def test_any_valid_request_goes_there_and_back_unchanged(server_path, request):
    op, fields = request
    result = call(server_path, op, **fields)
    assert result["op"] == op
    assert result["fields"] == make_request(op, **fields).fields == fields


@settings(max_examples=200, deadline=None)
@given(request=valid_requests)
def test_a_request_encodes_to_one_line_that_parses_back_to_it(request):
    op, fields = request
    checked = make_request(op, **fields)
    line = encode(checked.as_json())
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    assert parse_request(line) == checked


@settings(max_examples=200, deadline=None)
@given(data=junk)
def test_the_parser_fails_only_with_one_line_naming_what_is_wrong(data):
    try:
        parse_request(data)
    except ProtocolError as exc:
        message = str(exc)
        assert message and "\n" not in message and ":" in message


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_encode_is_always_one_line_of_the_same_value(value):
    try:
        line = encode(value)
    except ValueError:  # NaN and infinities are not JSON: refused, never written
        return
    assert line.count(b"\n") == 1 and line.endswith(b"\n") and line.isascii()
    assert json.loads(line) == value
