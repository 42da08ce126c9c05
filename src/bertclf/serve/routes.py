"""The endpoints: POST /predict, GET /health, /ready, /model, /metrics."""

import json
import socket
from concurrent.futures import TimeoutError as FutureTimeout

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from bertclf.serve.auth import PROTECTED_PATHS, presented_token, token_id
from bertclf.serve.batcher import Answer, ClientGone, ModelNotLoaded, Overloaded
from bertclf.serve.errors import ApiError
from bertclf.serve.openapi import document
from bertclf.serve.requestlog import client_ip
from bertclf.serve.worker import queue_wait, request_read

bp = Blueprint("api", __name__)
EXAMPLE = '{"x": ["How do I reverse a list?"]}'
LOADING = "the model is still loading; retry in a few seconds (GET /ready says when)"


def state():
    return current_app.extensions["bertclf"]


def client_id() -> str:
    """Who sent this request, for fair shares and stored corrections: the API token's id when the
    server needs tokens (protected routes run only with a valid one), else the client's address."""
    s = state()
    token = presented_token(request.headers) if s.tokens is not None else None
    if token is not None:
        return token_id(token)
    return f"ip:{client_ip(s.config.trusted_proxies())}"


@bp.before_app_request
def _bodiless_requests_have_arrived():
    if request.method != "POST":  # only POSTs read a body; the rest have arrived with their headers
        request_read()


@bp.before_app_request  # every blueprint's routes
def _authorized():
    """401 before the body is read when the server needs a token and the request has none that is valid."""
    s = state()
    if s.tokens is None:
        return
    route = request.url_rule.rule if request.url_rule is not None else None  # None: a 404 to come
    if route not in PROTECTED_PATHS and not (route == "/metrics" and s.config.protect_metrics):
        return
    token = presented_token(request.headers)
    if s.tokens.allows(token):
        return
    if s.tokens.unavailable is not None:  # fail closed; the log says why, the client need not know the path
        raise ApiError(
            503,
            "this server cannot check API tokens now; retry later (its operator's log says why)",
            {"Retry-After": "5"},
        )
    # RFC 6750: no credentials, a bare challenge; a wrong one, error="invalid_token". (Counted in
    # bertclf_requests by status 401; the token itself goes nowhere.)
    if token is None:
        message = "this server needs an API token: send Authorization: Bearer <token> (or Token: <token>)"
        challenge = 'Bearer realm="bertclf"'
    else:
        message = "the API token is not valid here (revoked, mistyped or for another server)"
        challenge = 'Bearer realm="bertclf", error="invalid_token"'
    raise ApiError(401, message, {"WWW-Authenticate": challenge})


def read_json(client_timeout: float, example: str = EXAMPLE):
    """The request's JSON body, read whole within the client's deadline, or an ApiError saying what
    is wrong with it (`example` shows a right one)."""
    if not request.is_json:
        raise ApiError(415, f"send JSON with Content-Type: application/json, e.g. {example}")
    cut_short = ApiError(
        408, f"the request body did not arrive whole within {client_timeout:g} s; send the whole request at once"
    )
    try:
        raw = request.get_data(cache=False)  # over MAX_CONTENT_LENGTH: 413
    except (ClientDisconnected, OSError):  # the read deadline shut the connection's reading side
        raise cut_short from None
    request_read()
    if request.content_length is not None and len(raw) < request.content_length:
        raise cut_short
    if request.content_length is None and len(raw) >= current_app.config["MAX_CONTENT_LENGTH"]:
        # A chunked body is cut at the limit without an error; reaching the limit means it was longer.
        raise RequestEntityTooLarge()
    try:
        payload = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ApiError(400, "request body is not valid UTF-8") from None
    except RecursionError:
        raise ApiError(400, f"request body is nested too deeply; send e.g. {example}") from None
    except ValueError as err:
        raise ApiError(400, f"request body is not valid JSON ({err}); send e.g. {example}") from None
    return payload


def unicode_text(value: str, where: str) -> str:
    """`value`, or a 400 when JSON smuggled in a lone surrogate escape (such as \\ud800): no Unicode text."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(
            400, f"{where} is not valid Unicode (it holds a lone surrogate such as \\ud800); send UTF-8 text"
        ) from None
    return value


def parse_texts(max_items: int, client_timeout: float, flag: str = "return_scores", example: str = EXAMPLE):
    """The request's texts and its yes/no `flag` (default false), or an ApiError saying exactly
    what is wrong with the body."""
    payload = read_json(client_timeout, example)
    if not isinstance(payload, dict) or "x" not in payload:
        raise ApiError(400, f'expected a JSON object with "x": a list of texts, e.g. {example}')
    texts = payload["x"]
    if not isinstance(texts, list):
        raise ApiError(400, f'"x" must be a list of strings, got {type(texts).__name__}')
    if not texts:
        raise ApiError(400, '"x" is empty; send at least one text')
    if len(texts) > max_items:
        raise ApiError(
            413,
            f'"x" has {len(texts)} texts, more than the {max_items} allowed per request; '
            "split it into several requests",
        )
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ApiError(400, f'"x"[{i}] is {type(text).__name__}, not a string')
        unicode_text(text, f'"x"[{i}]')
    value = payload.get(flag, False)
    if not isinstance(value, bool):
        raise ApiError(400, f'"{flag}" must be true or false')
    return texts, value


def client_gone(environ):
    """A callable telling whether the client closed its connection (None outside gunicorn)."""
    sock = environ.get("gunicorn.socket")
    if sock is None:
        return None

    def gone() -> bool:
        try:  # a closed connection reads as b"" at once; a live one has nothing to read (or its next request)
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:  # reset by the peer
            return True

    return gone


def computed(texts: list[str], embed: bool = False) -> Answer:
    """The batcher's answer for `texts` within the request's deadline, or the ApiError that says
    why not (loading, busy, past the deadline, client gone)."""
    s = state()
    if not s.manager.ready:
        raise ApiError(503, LOADING)
    # The deadline counts the wait in gunicorn's queue for a free thread too.
    waited = queue_wait()
    left = s.config.request_timeout - waited
    if left <= 0:
        wait = s.batcher.retry_after()
        raise ApiError(
            503,
            f"server is busy: the request waited {waited:.1f} s for a free thread, past its "
            f"{s.config.request_timeout:g} s deadline; retry after {wait} s",
            {"Retry-After": str(wait)},
        )
    try:
        future = s.batcher.submit(texts, gone=client_gone(request.environ), embed=embed, client=client_id())
        return future.result(timeout=left)
    except Overloaded as busy:
        raise ApiError(
            503,
            f"server is busy ({s.batcher.waiting_texts} texts waiting); retry after {busy.retry_after} s",
            {"Retry-After": str(busy.retry_after)},
        ) from None
    except ModelNotLoaded:
        raise ApiError(503, LOADING) from None
    except FutureTimeout:
        wait = s.batcher.retry_after()
        raise ApiError(
            503,
            f"prediction took longer than {s.config.request_timeout:g} s; retry after {wait} s, or send fewer "
            "texts per request",
            {"Retry-After": str(wait)},
        ) from None
    except ClientGone:
        # Nobody reads this answer; 499 (nginx's "client closed request") marks it in the log.
        raise ApiError(499, "the client closed the connection before its texts were computed") from None


def query_texts(max_items: int):
    """GET /predict?text=...&text=...: the texts of a quick try from a browser's address bar."""
    texts = request.args.getlist("text")
    if not texts:
        raise ApiError(
            400, "add the text to classify: /predict?text=How+do+I+reverse+a+list%3F (repeat text= for more)"
        )
    if len(texts) > max_items:
        raise ApiError(413, f"{len(texts)} texts, more than the {max_items} allowed per request")
    scores = request.args.get("return_scores", "false").lower()
    if scores not in ("true", "false"):
        raise ApiError(400, "return_scores must be true or false")
    return texts, scores == "true"


@bp.route("/predict", methods=["GET", "POST"])
def predict():
    s = state()
    if request.method == "GET":
        texts, with_scores = query_texts(s.config.max_items)
    else:
        texts, with_scores = parse_texts(s.config.max_items, s.config.client_timeout)
    answer = computed(texts)
    abstained = answer.labels.count(None)
    if abstained:
        s.metrics.abstained.inc(abstained)
    body = {"model": answer.model, "predictions": answer.labels, "probabilities": answer.probabilities}
    if with_scores or answer.multi_label:  # a multi-label answer always gives every label's score
        body["scores"] = [dict(zip(answer.classes, row, strict=True)) for row in answer.scores]
    return jsonify(body)


@bp.get("/health")
def health():
    return jsonify(status="ok")


@bp.get("/ready")
def ready():
    """200 when this worker can answer /predict now: a model is loaded and not stuck."""
    s = state()
    if not s.manager.ready:
        error = s.manager.public_error()
        raise ApiError(503, f"model not loaded yet{': ' + error if error else ''}")
    busy = s.batcher.busy_for()
    if busy > s.config.request_timeout:
        raise ApiError(503, f"stuck: the model has been computing one batch for {busy:.0f} s")
    return jsonify(status="ready", model=s.manager.predictor.name)


@bp.get("/model")
def model():
    return jsonify(state().manager.status())


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 document of every route, request, response and error."""
    return jsonify(document(state().config))


@bp.get("/metrics")
def metrics():
    return Response(state().metrics.render(), mimetype="text/plain; version=0.0.4")
