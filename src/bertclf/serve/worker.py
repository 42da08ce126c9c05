"""gunicorn's threaded worker, with an event-loop front: no request thread waits on a client.

- Requests are read whole before a thread takes them. gunicorn's gthread worker hands a new
  connection to a thread at once, which then waits (5 s) for its first bytes and reads the rest
  with blocking calls: a few dozen idle connections, or a few that trickle their headers, held
  every thread, and /health waited a minute before auth even ran. Here the worker's own event
  loop (gunicorn's selector, which already watches kept-alive connections) reads each
  connection's bytes as they come, without blocking, until serve/framing.py says one request is
  whole; only then does a thread take it, and gunicorn parses it from memory. An idle connection
  costs a file descriptor and a few hundred bytes, not a thread.
- Deadlines for clients. A request must arrive whole within client_timeout of the connection's
  first byte being awaited: past it, a connection that sent nothing is closed, one that sent
  part of a request gets 408. When the worker holds `worker_connections` connections, a new one
  closes the oldest connection still sending its request (a flood of idle connections cannot
  lock anyone out: a well-behaved client's request is whole within milliseconds).
- How long a request waited for a thread. When all threads are busy, a request waits in the
  pool's queue, where nothing in the app can see it. Its deadline (request_timeout) must count
  that wait too.
- A last deadline inside the thread (ReadDeadlines): should a thread ever wait for bytes (a
  request framed in a way gunicorn reads differently), its reading side is shut after
  client_timeout, so the thread is freed.
"""

import contextlib
import errno
import itertools
import json
import resource
import selectors
import socket
import sys
import threading
import time
from functools import partial

from gunicorn.workers.gthread import TConn
from gunicorn.workers.gthread import ThreadWorker as GunicornThreadWorker

from bertclf.config import ServeConfig
from bertclf.serve.framing import CONTINUE, Framing, Refusal

RECV_BYTES = 64 << 10
# After a refusal (413, 431, 408, 400): how long, and how many more bytes, the rest of the
# client's request is read and dropped so that it reads the answer (see ThreadWorker._refuse).
LINGER_SECONDS = 2.0
LINGER_BYTES = 1 << 20

_thread = threading.local()


def queue_wait() -> float:
    """Seconds the request on this thread waited for a free thread (0 when the app runs without this
    worker, as in tests with Flask's client). Time the client takes to send it is not counted."""
    return getattr(_thread, "queue_wait", 0.0)


def request_read() -> None:
    """The request on this thread has arrived whole: its read deadline no longer applies."""
    deadlines, key = getattr(_thread, "read_deadline", (None, None))
    if deadlines is not None:
        deadlines.done(key)


class ReadDeadlines:
    """Shut the reading side of connections whose request has not arrived by its deadline."""

    def __init__(self, seconds: float, tick: float = 0.25):
        self.seconds = seconds
        self.tick = tick
        self._open: dict[int, tuple[float, socket.socket]] = {}
        self._keys = itertools.count()
        self._lock = threading.Lock()
        threading.Thread(target=self._run, name="read-deadlines", daemon=True).start()

    def watch(self, sock: socket.socket) -> int:
        key = next(self._keys)
        with self._lock:
            self._open[key] = (time.monotonic() + self.seconds, sock)
        return key

    def done(self, key: int) -> None:
        with self._lock:
            self._open.pop(key, None)

    def _run(self) -> None:
        while True:
            time.sleep(self.tick)
            now = time.monotonic()
            with self._lock:
                late = [key for key, (deadline, _) in self._open.items() if deadline <= now]
                socks = [self._open.pop(key)[1] for key in late]
            for sock in socks:
                with contextlib.suppress(OSError):  # already closed
                    sock.shutdown(socket.SHUT_RD)  # a read blocked on it returns b"" at once


class BufferedConn(TConn):
    """A connection whose request the event loop has read: gunicorn's parser reads it from memory."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.framing: Framing | None = None
        self.read_by = 0.0  # monotonic deadline for the request being read (or the lingering close)
        self.linger_bytes = 0  # what a refused client may still send before the connection closes
        self.pending = b""  # bytes read before gunicorn's parser existed

    def init(self):
        super().init()
        if self.pending and self.parser is not None:
            self.parser.unreader.unread(self.pending)
            self.pending = b""


def raise_file_limit() -> int:
    """Raise this process's open-file limit to its hard limit (each connection is a file); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft if soft != resource.RLIM_INFINITY else target
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def _answer(sock: socket.socket, refusal: Refusal) -> None:
    """Best effort: the front's own error, in the app's JSON shape, on a socket about to close."""
    body = json.dumps({"error": refusal.message}).encode()
    reason = {
        400: "Bad Request",
        408: "Request Timeout",
        413: "Content Too Large",
        431: "Request Header Fields Too Large",
    }
    head = (
        f"HTTP/1.1 {refusal.status} {reason.get(refusal.status, 'Error')}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with contextlib.suppress(OSError):  # non-blocking: a client that does not read gets nothing
        sock.send(head.encode() + body)


class ThreadWorker(GunicornThreadWorker):
    """gunicorn's gthread worker whose event loop reads requests whole before a thread takes them;
    tells the app how long each request waited for a thread."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.connection_limit: int = self.cfg.worker_connections
        # gunicorn stops accepting at worker_connections; this worker accepts and closes the
        # oldest unfinished request instead (see the module's docstring).
        self.worker_connections = sys.maxsize
        self.reading: dict[BufferedConn, None] = {}  # oldest first: the order deadlines expire in
        self.lingering: dict[BufferedConn, None] = {}  # refused, answered, the rest of their request drained

    def init_process(self):
        settings = ServeConfig.from_env()
        self.client_timeout = settings.client_timeout
        self.max_body_bytes = settings.max_body_bytes
        self.read_deadlines = ReadDeadlines(settings.client_timeout)
        # Every connection is a file: leave room for the model's and the log's files.
        self.connection_limit = max(16, min(self.connection_limit, raise_file_limit() - 64))
        super().init_process()

    # === The event loop's reading stage ===
    def accept(self, listener):
        try:
            client, address = listener.accept()
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = BufferedConn(self.cfg, client, address, listener.getsockname())  # non-blocking
        if self.cfg.is_ssl:  # TLS is read in the thread (the wrap needs blocking reads)
            self.enqueue_req(conn)
            return
        self._make_room()
        self._read(conn, b"")

    def _make_room(self) -> None:
        while self.nr_conns > self.connection_limit and self.lingering:
            self._close(next(iter(self.lingering)))  # answered already
        while self.nr_conns > self.connection_limit and self.reading:
            self._close(next(iter(self.reading)))  # the oldest request still arriving
        while self.nr_conns > self.connection_limit and self.keepalived_conns:
            idle = self.keepalived_conns.popleft()  # then the longest idle kept-alive connection
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.poller.unregister(idle.sock)
            self.nr_conns -= 1
            idle.close()

    def _read(self, conn: BufferedConn, already: bytes) -> None:
        """Read the next request of `conn` in the event loop, starting from bytes already read."""
        conn.framing = Framing(self.max_body_bytes)
        conn.read_by = time.monotonic() + self.client_timeout
        conn.sock.setblocking(False)
        if already and self._take(conn, already):
            return
        self.reading[conn] = None
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    @staticmethod
    def _received(conn: BufferedConn) -> bytes | None:
        """What the client sent (b"": it closed or reset), or None when nothing is there yet."""
        try:
            return conn.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return b""

    def _on_readable(self, conn: BufferedConn, _sock) -> None:
        data = self._received(conn)
        if data is None:
            return
        if not data:  # the client closed (or reset) before its request was whole
            self._close(conn)
            return
        self._take(conn, data)

    def _take(self, conn: BufferedConn, data: bytes) -> bool:
        """Add bytes to the request being read; True once it is handed over or refused."""
        framing = conn.framing
        assert framing is not None
        asked = framing.wants_continue
        framing.feed(data)
        if framing.refusal is not None:
            self._refuse(conn, framing.refusal)
            return True
        if framing.whole:
            self._dispatch(conn)
            return True
        if framing.wants_continue and not asked:
            with contextlib.suppress(OSError):
                conn.sock.send(CONTINUE)
        return False

    def _dispatch(self, conn: BufferedConn) -> None:
        self._unwatch(conn)
        framing = conn.framing
        assert framing is not None
        data, conn.framing = bytes(framing.data), None
        conn.data_ready = True  # gthread would otherwise wait for the socket to be readable
        if conn.parser is None:
            conn.pending = data
        else:
            conn.parser.unreader.unread(data)
        self.enqueue_req(conn)

    def _unwatch(self, conn: BufferedConn) -> None:
        self.reading.pop(conn, None)
        self.lingering.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)

    def _refuse(self, conn: BufferedConn, refusal: Refusal) -> None:
        """Answer, then close lingering: a socket closed with the client's bytes unread sends a
        reset, which can reach the client before the answer does (it sees a broken pipe, not the
        413). So the answer is followed by our FIN, and what the client still sends of its request
        is read and dropped, for at most LINGER_SECONDS and LINGER_BYTES, as nginx does."""
        _answer(conn.sock, refusal)
        self._unwatch(conn)
        conn.framing = None
        if not self.alive:
            self._close(conn)
            return
        with contextlib.suppress(OSError):
            conn.sock.shutdown(socket.SHUT_WR)
        conn.read_by = time.monotonic() + LINGER_SECONDS
        conn.linger_bytes = LINGER_BYTES
        self.lingering[conn] = None
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_lingering, conn))

    def _on_lingering(self, conn: BufferedConn, _sock) -> None:
        data = self._received(conn)
        if data is None:
            return
        conn.linger_bytes -= len(data)
        if not data or conn.linger_bytes <= 0:
            self._close(conn)

    def _close(self, conn: BufferedConn) -> None:
        self._unwatch(conn)
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self):
        """Also end requests that did not arrive whole in time (gunicorn calls this every loop);
        a stopping worker closes at once the connections that sent nothing."""
        super().murder_pending()
        now = time.monotonic()
        while self.lingering:
            conn = next(iter(self.lingering))
            if conn.read_by > now and self.alive:
                break
            self._close(conn)
        if self.alive:
            while self.reading:  # oldest first: stop at the first one still in time
                conn = next(iter(self.reading))
                if conn.read_by > now:
                    break
                self._expire(conn)
            return
        for conn in list(self.reading):
            if conn.read_by <= now or not self._started(conn):
                self._expire(conn)

    @staticmethod
    def _started(conn: BufferedConn) -> bool:
        return conn.framing is not None and bool(conn.framing.data)

    def _expire(self, conn: BufferedConn) -> None:
        if self._started(conn):
            message = f"the request did not arrive whole within {self.client_timeout:g} s; send it at once"
            self._refuse(conn, Refusal(408, message))
        else:  # sent nothing: nobody to answer
            self._close(conn)

    # === Kept-alive connections come back through the reading stage ===
    def on_client_socket_readable(self, conn, client):
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._read(conn, b"")
        self._on_readable(conn, client)

    def finish_request(self, conn, fs):
        keepalive = not fs.cancelled() and fs.exception() is None and fs.result() is True
        if keepalive and self.alive and conn.parser is not None:
            ahead = conn.parser.unreader.take_buffered()  # a pipelined next request, read along
            if ahead:
                self._read(conn, ahead)
                return
        super().finish_request(conn, fs)

    # === Inside a request thread ===
    def enqueue_req(self, conn):
        conn.bertclf_queued_at = time.monotonic()
        super().enqueue_req(conn)

    def handle(self, conn):
        _thread.queue_wait = time.monotonic() - getattr(conn, "bertclf_queued_at", time.monotonic())
        key = self.read_deadlines.watch(conn.sock)
        _thread.read_deadline = (self.read_deadlines, key)
        try:
            return super().handle(conn)
        finally:
            self.read_deadlines.done(key)
            _thread.queue_wait = 0.0
            _thread.read_deadline = (None, None)
