"""One error shape for every failure: {"error": "<what is wrong and how to fix it>"} with its status."""

import logging

from flask import jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error the client can fix (or wait out); `status` is the HTTP status code."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


# Werkzeug's own errors, reworded to say what to do.
HTTP_MESSAGES = {
    404: "no such endpoint; use POST /predict, /embed or /feedback, GET /predict?text=..., /health, /ready, /model, "
    "/metrics, /openapi.json or /docs",
    405: "method not allowed; /embed and /feedback take POST with a JSON body, /predict POST or GET ?text=...",
}


def error_response(status: int, message: str, headers: dict[str, str] | None = None):
    """The JSON error response."""
    response = jsonify(error=message)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def register_error_handlers(app):
    """Make every error, including unexpected ones, answer in the one JSON shape."""

    @app.errorhandler(ApiError)
    def _api_error(err):
        return error_response(err.status, err.message, err.headers)

    @app.errorhandler(HTTPException)
    def _http_error(err):
        if err.code == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            return error_response(413, f"request body is larger than {limit} bytes; send fewer or shorter texts")
        # Keep what the error says in its headers (Allow on a 405), not its HTML content type.
        headers = {k: v for k, v in err.get_headers() if k.lower() not in ("content-type", "content-length")}
        return error_response(err.code or 500, HTTP_MESSAGES.get(err.code or 500, err.description or ""), headers)

    @app.errorhandler(Exception)
    def _unexpected(err):
        log.exception("unexpected error")
        return error_response(500, "internal error; the server log has the details")
