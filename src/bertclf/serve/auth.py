"""Token auth, off by default: with `api_tokens_file` set, /predict, /model (and /metrics when
`protect_metrics` is on) answer only requests carrying one of the file's tokens, as
`Authorization: Bearer <token>` or seed 000's `Token: <token>` header.

The file holds one token per line, or `sha256:<hex>`, the SHA-256 of a token, so the file itself
holds no secret (`python -m bertclf token --file F` makes one). Blank lines and `#` comments are
skipped. Every presented token is hashed and compared with every stored hash in constant time
(`hmac.compare_digest`, no early exit), so neither which token nor how much of it matched shows in
the response time. A token never reaches a log line, an error message or /metrics.

The file is re-read when it changes (a stat per request, like the model pointer's), so adding or
revoking a token needs no restart; a change that does not parse keeps the tokens in force and logs
why (a typo must not open the server, nor lock everyone out). A file that is gone or cannot be
read fails closed: protected routes answer 503 until it is back (a deleted file must not keep
revoked tokens working). A file others can write, and tokens kept in plain text, are warned about.
"""

import hashlib
import hmac
import logging
import os
import re
import secrets
import stat
import threading
from pathlib import Path

from bertclf.errors import ConfigError

log = logging.getLogger(__name__)

# What needs a token when api_tokens_file is set (GET and POST alike); /metrics too with
# protect_metrics. /health, /ready, /openapi.json and /docs stay open: a load balancer's probes and
# a reader of the docs carry none.
PROTECTED_PATHS = ("/predict", "/embed", "/explain", "/feedback", "/model", "/report")
HASH_PREFIX = "sha256:"
MIN_TOKEN_LENGTH = 16  # shorter is guessable; `python -m bertclf token` makes 43 characters
MAX_FILE_BYTES = 1 << 20
# What a header value can carry: visible ASCII, no spaces (RFC 7230 token68-ish, and seed 000's tokens).
TOKEN_CHARS = re.compile(r"^[\x21-\x7e]+$")
HEX_DIGEST = re.compile(r"^[0-9a-fA-F]{64}$")


class TokenFileError(ConfigError):
    """The tokens file is missing, unreadable or has a line that is no token; the message names the line."""


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def token_id(token: str) -> str:
    """What names a token in stored data (who sent a correction): the start of its SHA-256, never
    the token. A token's holder can compute it; nobody can get the token back from it."""
    return "token:" + digest(token).hex()[:16]


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def hashed_line(token: str) -> str:
    """The line that stores `token` without the token itself."""
    return HASH_PREFIX + digest(token).hex()


def plain_tokens(text: str) -> int:
    """How many lines of a tokens file hold a token itself rather than its hash."""
    lines = (line.strip() for line in text.splitlines())
    return sum(1 for line in lines if line and not line.startswith("#") and not line.lower().startswith(HASH_PREFIX))


def parse_tokens(text: str, source: str) -> tuple[bytes, ...]:
    """The SHA-256 digests of the tokens in a tokens file's text. Errors name the line, never its content."""
    digests = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.lower().startswith(HASH_PREFIX):
            hexdigest = line[len(HASH_PREFIX) :].strip()
            if not HEX_DIGEST.match(hexdigest):
                raise TokenFileError(f"{source} line {number}: after {HASH_PREFIX} put the 64 hex digits of a SHA-256")
            digests.append(bytes.fromhex(hexdigest))
            continue
        if not TOKEN_CHARS.match(line):
            raise TokenFileError(
                f"{source} line {number}: a token is one word of visible ASCII characters (no spaces); "
                f"make one with: python -m bertclf token --file {source}"
            )
        if len(line) < MIN_TOKEN_LENGTH:
            raise TokenFileError(
                f"{source} line {number}: the token is shorter than {MIN_TOKEN_LENGTH} characters, too easy to "
                f"guess; make one with: python -m bertclf token --file {source}"
            )
        digests.append(digest(line))
    return tuple(digests)


class TokensUnavailable(TokenFileError):
    """The tokens file is gone or cannot be read: no token can be checked (fail closed)."""


def read_tokens(path: Path) -> tuple[bytes, ...]:
    """The file's token digests; warns (in the log) about a file others can write or tokens kept in
    plain text. Raises TokensUnavailable when it cannot be read, TokenFileError when it does not parse."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
            mode = os.fstat(f.fileno()).st_mode
    except OSError as err:
        raise TokensUnavailable(f"cannot read the tokens file {path}: {err.strerror or err}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise TokenFileError(f"the tokens file {path} is larger than {MAX_FILE_BYTES} bytes; it holds a token a line")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise TokenFileError(f"the tokens file {path} is not UTF-8 text") from None
    digests = parse_tokens(text, str(path))
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        log.warning(
            "the tokens file %s can be written by other users (mode %s): whoever can write it can add a token; "
            "chmod go-w %s",
            path,
            oct(mode & 0o777),
            path,
        )
    plain = plain_tokens(text)
    if plain:
        log.warning(
            "%d token(s) in %s are kept in plain text: anyone who reads the file can use them; keep only their "
            "sha256: lines (python -m bertclf token writes those)",
            plain,
            path,
        )
    return digests


def presented_token(headers) -> str | None:
    """The token a request carries: `Authorization: Bearer <token>`, else `Token: <token>`."""
    authorization = headers.get("Authorization", "")
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    token = headers.get("Token", "").strip()
    return token or None


class Tokens:
    """The tokens in force, re-read from their file when it changes."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()
        # Why no token can be checked now (the file is gone or unreadable), else None: then every
        # protected route answers 503, never with the tokens read before (a deleted file must not
        # keep a revoked token working).
        self.unavailable: str | None = None
        self._stamp = self._file_stamp()
        self._digests = read_tokens(self.path)  # a broken file at start is a ConfigError: fail fast
        if not self._digests:
            raise TokenFileError(
                f"the tokens file {self.path} holds no token, so every request would be refused; add one with: "
                f"python -m bertclf token --file {self.path}"
            )

    def _file_stamp(self) -> tuple | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _refresh(self) -> None:
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return
        with self._lock:
            if stamp == self._stamp:
                return
            self._stamp = stamp
            try:
                self._digests = read_tokens(self.path)
            except TokensUnavailable as err:
                self.unavailable = str(err)
                self._digests = ()
                log.error("%s; protected routes answer 503 until it is back", err)
                return
            except TokenFileError as err:
                log.error("%s; the tokens read before stay in force", err)
                return
            self.unavailable = None
            log.info("re-read the tokens file %s: %d token(s)", self.path, len(self._digests))

    def __len__(self) -> int:
        return len(self._digests)

    def allows(self, token: str | None) -> bool:
        """Whether `token` is one of the file's (constant time in the token and in which one matched)."""
        self._refresh()
        if self.unavailable is not None:
            return False
        presented = digest(token or "")
        matched = False
        for stored in self._digests:
            matched |= hmac.compare_digest(presented, stored)
        return matched and token is not None
