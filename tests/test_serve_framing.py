"""The event loop's question, "has a whole request arrived?", answered as gunicorn reads requests."""

import pytest

from bertclf.serve.framing import MAX_HEAD_BYTES, Framing


def fed(*parts, limit=1000):
    framing = Framing(limit)
    for part in parts:
        framing.feed(part)
    return framing


def byte_by_byte(data, limit=1000):
    framing = Framing(limit)
    for i in range(len(data)):
        assert not framing.whole, f"whole after {i} of {len(data)} bytes"
        framing.feed(data[i : i + 1])
    return framing


POST = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


def test_a_request_is_whole_when_its_headers_and_body_are_in():
    assert fed(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").whole
    assert not fed(b"GET /health HTTP/1.1\r\nHost: x\r\n").whole
    assert byte_by_byte(b"GET /health HTTP/1.0\r\n\r\n").whole
    body = b'{"x": ["apple"]}'
    request = POST + b"Content-Length: %d\r\n\r\n" % len(body) + body
    assert byte_by_byte(request).whole
    assert not fed(request[:-1]).whole
    assert fed(request + b"GET / HTTP/1.1\r\n").data == request + b"GET / HTTP/1.1\r\n", "pipelined bytes kept"


def test_chunked_bodies_are_read_to_their_last_chunk_and_trailers():
    chunks = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"
    request = POST + b"Transfer-Encoding: chunked\r\n\r\n" + chunks
    assert byte_by_byte(request).whole
    with_trailers = POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n"
    assert byte_by_byte(with_trailers).whole
    assert not fed(POST + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhel").whole


@pytest.mark.parametrize(
    "head",
    [
        b"Content-Length: 3\r\nContent-Length: 3\r\n",  # two lengths
        b"Content-Length: +3\r\n",  # not a number
        b"Transfer-Encoding: chunked, gzip\r\n",  # not chunked last
        b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",  # both
    ],
)
def test_requests_gunicorn_refuses_are_handed_over_without_waiting_for_a_body(head):
    framing = fed(POST + head + b"\r\n")
    assert framing.whole and framing.refusal is None


def test_a_bad_chunk_size_is_handed_over_for_gunicorn_to_refuse():
    assert fed(POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n").whole


def test_too_large_bodies_and_headers_are_refused_at_once():
    declared = fed(POST + b"Content-Length: 1001\r\n\r\n")
    assert declared.refusal is not None and declared.refusal.status == 413
    assert "larger than 1000 bytes" in declared.refusal.message
    sent = fed(POST + b"Transfer-Encoding: chunked\r\n\r\n", b"3e8\r\n" + b"a" * 1000 + b"\r\n", b"1\r\n")
    assert sent.refusal is not None and sent.refusal.status == 413
    headers = fed(b"GET / HTTP/1.1\r\nX-Pad: " + b"a" * MAX_HEAD_BYTES)
    assert headers.refusal is not None and headers.refusal.status == 431


def test_expect_100_continue_is_noticed_only_when_a_body_is_awaited():
    assert fed(POST + b"Expect: 100-continue\r\nContent-Length: 3\r\n\r\n").wants_continue
    assert not fed(b"GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n").wants_continue
    assert not fed(POST.replace(b"1.1", b"1.0") + b"Expect: 100-continue\r\nContent-Length: 3\r\n\r\n").wants_continue
