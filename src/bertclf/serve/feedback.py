"""POST /feedback: a user's correction of a text's label, stored for the next training run
(bertclf.feedback holds the store, its export and what training reads)."""

import logging
import sqlite3

from flask import Blueprint, current_app, jsonify

from bertclf.feedback import FeedbackError, FeedbackStore, Limits, SenderLimit, StoreFull
from bertclf.serve.errors import ApiError
from bertclf.serve.routes import LOADING, client_id, read_json, state, unicode_text

log = logging.getLogger(__name__)

bp = Blueprint("feedback", __name__)
EXAMPLE = '{"text": "git push was rejected", "label": "git"}'
MAX_LABEL_CHARS = 200
MAX_MODEL_CHARS = 200


def _store() -> FeedbackStore:
    return current_app.extensions["bertclf.feedback"]


def _string(payload: dict, key: str, limit: int | None = None, required: bool = False) -> str | None:
    value = payload.get(key)
    if value is None:
        if required:
            raise ApiError(400, f'"{key}" is missing; send e.g. {EXAMPLE}')
        return None
    if not isinstance(value, str):
        raise ApiError(400, f'"{key}" must be a string, got {type(value).__name__}')
    unicode_text(value, f'"{key}"')
    if limit is not None and len(value) > limit:
        raise ApiError(400, f'"{key}" is longer than {limit} characters')
    return value


def _labels(value, key: str, multi_label: bool) -> list[str]:
    """The label(s) a field names: a string, or for a multi-label model also a list of strings."""
    items = value if multi_label and isinstance(value, list) else [value]
    if not items or not all(isinstance(item, str) for item in items):
        kind = "a label or a list of labels" if multi_label else "a label (a string)"
        raise ApiError(400, f'"{key}" must be {kind}, got {type(value).__name__}')
    labels = [unicode_text(item, f'"{key}"').strip() for item in items]
    for label in labels:
        if not label:
            raise ApiError(400, f'"{key}" is empty; name the right label, e.g. {EXAMPLE}')
        if len(label) > MAX_LABEL_CHARS or not label.isprintable():
            raise ApiError(400, f'"{key}" must be one line of at most {MAX_LABEL_CHARS} printable characters')
    return list(dict.fromkeys(labels))


@bp.post("/feedback")
def feedback():
    s = state()
    payload = read_json(s.config.client_timeout, EXAMPLE)
    if not isinstance(payload, dict):
        raise ApiError(400, f'expected a JSON object with "text" and "label", e.g. {EXAMPLE}')
    text = _string(payload, "text", s.config.feedback_max_text_chars, required=True)
    assert text is not None
    if not text.strip():
        raise ApiError(400, '"text" is empty; send the text the model labelled')
    if "label" not in payload:
        raise ApiError(400, f'"label" is missing; send the right label, e.g. {EXAMPLE}')
    predictor = s.manager.predictor
    if predictor is None:
        raise ApiError(503, LOADING)
    multi = bool(getattr(predictor, "multi_label", False))
    labels = _labels(payload["label"], "label", multi)
    separator = (predictor.config.get("multi_label") or {}).get("separator", "|") if multi else None
    if separator and any(separator in label for label in labels):
        raise ApiError(400, f"a label holds the separator {separator!r}; send the labels as a list")
    unknown = [label for label in labels if label not in predictor.classes]
    if unknown and not s.config.feedback_new_labels:
        known = ", ".join(predictor.classes[:50])
        raise ApiError(
            400,
            f"label {unknown[0]!r} is not one the model knows ({known}); to add a class, start the server with "
            "--feedback_new_labels",
        )
    predicted = payload.get("predicted")
    if predicted is not None:
        predicted = (separator or "|").join(_labels(predicted, "predicted", multi))
    model = _string(payload, "model", MAX_MODEL_CHARS)
    store = _store()
    config = s.config
    limits = Limits(
        config.feedback_max_rows,
        config.feedback_max_bytes,
        config.feedback_sender_max_rows,
        config.feedback_sender_max_bytes,
        config.feedback_sender_per_minute,
    )
    try:
        stored = store.add(text, (separator or "|").join(labels), predicted, model, predictor.name, client_id(), limits)
    except StoreFull as full:
        raise ApiError(
            507,
            f"the feedback store is full ({full}); export them with `python -m bertclf feedback export` and start "
            "a new store",
        ) from None
    except SenderLimit as limit:
        if limit.retry_after is not None:
            wait = str(limit.retry_after)
            raise ApiError(429, f"{limit}; retry after {wait} s", {"Retry-After": wait}) from None
        raise ApiError(429, f"{limit}; the server's operator can export the store and start a new one") from None
    except (sqlite3.Error, FeedbackError) as err:
        log.error("feedback store %s: %s", store.path, err)
        if "locked" in str(err) or "busy" in str(err):
            raise ApiError(503, "the feedback store is busy; retry after 1 s", {"Retry-After": "1"}) from None
        raise ApiError(503, "the feedback store cannot be written now; the server log says why") from None
    for label in labels:
        s.metrics.feedback.labels(label if label in predictor.classes else "(new label)").inc()
    body = {"id": stored, "label": labels if multi else labels[0], "model": predictor.name}
    response = jsonify(body)
    response.status_code = 201
    return response
