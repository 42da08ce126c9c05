"""Has a whole HTTP/1.x request arrived? The worker's event loop asks this of the bytes a
connection has sent so far, so that no request thread waits on a client (serve/worker.py).

The rules are gunicorn's own (gunicorn/http/message.py, `set_body_reader`), so both read a
request the same way: a Transfer-Encoding whose last coding is chunked (HTTP/1.1, and no
Content-Length beside it) is read chunk by chunk; otherwise one numeric Content-Length; otherwise
no body. A request gunicorn will refuse anyway (two Content-Lengths, a length that is not a
number, a transfer coding it does not know) is handed over as soon as its headers are in: gunicorn
answers 400 without reading a body. Only framing is read here; gunicorn parses the request itself.
"""

from dataclasses import dataclass

MAX_HEAD_BYTES = 64 << 10  # request line and headers; gunicorn's own limits are checked after
MAX_CHUNK_LINE = 1024  # a chunk-size line (hex size and extensions)
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@dataclass(frozen=True)
class Refusal:
    """What the front answers instead of handing a request over: status and message."""

    status: int
    message: str


class Framing:
    """Feed it a connection's bytes as they arrive; `whole` says when one request is complete.

    Args:
        max_body_bytes: a body declared or sent larger than this is refused with 413 at once,
            without waiting for it.
    """

    def __init__(self, max_body_bytes: int):
        self.max_body_bytes = max_body_bytes
        self.data = bytearray()
        self.whole = False
        self.refusal: Refusal | None = None
        self.wants_continue = False  # the client waits for "100 Continue" before its body
        self._body_start: int | None = None
        self._length: int | None = None  # Content-Length, once the headers are in
        self._chunked = False
        self._scan = 0  # chunked: where the next chunk-size line starts
        self._body = 0  # chunked: body bytes so far
        self._head_scan = 0  # where to look for the end of the headers next (each byte looked at once)

    def feed(self, data: bytes) -> None:
        """Add bytes the client sent; updates `whole`, `refusal` and `wants_continue`."""
        self.data += data
        if self.whole or self.refusal:
            return
        if self._body_start is None and not self._read_head():
            return
        assert self._body_start is not None
        if self._chunked:
            self._read_chunks()
        elif len(self.data) - self._body_start >= (self._length or 0):
            self.whole = True

    def _read_head(self) -> bool:
        end = self.data.find(b"\r\n\r\n", self._head_scan)
        if end < 0:
            self._head_scan = max(0, len(self.data) - 3)
            if len(self.data) > MAX_HEAD_BYTES:
                self.refusal = Refusal(431, f"request headers are larger than {MAX_HEAD_BYTES} bytes")
            return False
        if end > MAX_HEAD_BYTES:
            self.refusal = Refusal(431, f"request headers are larger than {MAX_HEAD_BYTES} bytes")
            return False
        self._body_start = end + 4
        lines = bytes(self.data[:end]).split(b"\r\n")
        version = lines[0].rsplit(b" ", 1)[-1].strip().upper()
        lengths, codings, expect = [], [], b""
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().upper(), value.strip(b" \t")
            if name == b"CONTENT-LENGTH":
                lengths.append(value)
            elif name == b"TRANSFER-ENCODING":
                codings += [c.strip(b" \t").lower() for c in value.split(b",")]
            elif name == b"EXPECT":
                expect = value.lower()
        if codings:
            if codings[-1] != b"chunked" or version != b"HTTP/1.1" or lengths:
                self.whole = True  # gunicorn refuses it (400) without reading a body
                return False
            self._chunked = True
        elif lengths:
            if len(lengths) > 1 or not lengths[0].isdigit():
                self.whole = True  # gunicorn refuses it (400)
                return False
            self._length = int(lengths[0])
            if self._length > self.max_body_bytes:
                self.refusal = Refusal(413, self._too_large())
                return False
        body_expected = self._chunked or bool(self._length)
        self.wants_continue = body_expected and expect == b"100-continue" and version == b"HTTP/1.1"
        return True

    def _read_chunks(self) -> None:
        assert self._body_start is not None
        position = max(self._scan, self._body_start)
        while True:
            line_end = self.data.find(b"\r\n", position)
            if line_end < 0:
                if len(self.data) - position > MAX_CHUNK_LINE:
                    self.whole = True  # gunicorn refuses the line (400)
                break
            size_field = bytes(self.data[position:line_end]).split(b";", 1)[0].strip(b" \t")
            try:
                size = int(size_field, 16)
            except ValueError:
                self.whole = True  # gunicorn refuses it (400)
                break
            if size == 0:
                # Trailers end with an empty line: the CRLF ending "0" and another, or trailer lines first.
                if self.data.find(b"\r\n\r\n", line_end) >= 0:
                    self.whole = True
                elif len(self.data) - line_end > MAX_HEAD_BYTES:
                    self.refusal = Refusal(431, f"request trailers are larger than {MAX_HEAD_BYTES} bytes")
                break
            if self._body + size > self.max_body_bytes:
                self.refusal = Refusal(413, self._too_large())
                break
            after = line_end + 2 + size + 2  # the data and its CRLF
            if len(self.data) < after:
                break
            self._body += size
            position = self._scan = after

    def _too_large(self) -> str:
        # The app's own 413 message (serve/errors.py), so a client sees one wording.
        return f"request body is larger than {self.max_body_bytes} bytes; send fewer or shorter texts"
