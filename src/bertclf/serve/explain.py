"""POST /explain: each word's weight for a label, by occlusion through the served graph (inference/explain.py).

`{"x": [texts], "label": optional}` -> `{"model", "explanations": [{"label", "probability", "words":
[{"word", "start", "end", "weight", "read"}]}]}`. A text of W words is W + 1 texts of work: the
texts and their variants (one word deleted each) go through the same batcher as /predict, so they
share its passes, its fairness between clients, its bound on waiting texts and the request's
deadline; the same auth, limits and error shapes apply. Because a request costs many texts, one
may hold at most ROWS_PER_ITEM x max_items of them (413 past that, before any work).
"""

from flask import Blueprint, jsonify

from bertclf.errors import ConfigError
from bertclf.inference.explain import ROWS_PER_ITEM, check_label, plan, weigh
from bertclf.serve.errors import ApiError
from bertclf.serve.routes import LOADING, computed, read_json, state, unicode_text

bp = Blueprint("explain", __name__)
EXAMPLE = '{"x": ["My java class does not compile"], "label": "java"}'


def _parse(max_items: int, client_timeout: float) -> tuple[list[str], str | None]:
    payload = read_json(client_timeout, EXAMPLE)
    if not isinstance(payload, dict) or "x" not in payload:
        raise ApiError(400, f'expected a JSON object with "x": a list of texts, e.g. {EXAMPLE}')
    texts, label = payload["x"], payload.get("label")
    if not isinstance(texts, list) or not texts:
        raise ApiError(400, '"x" must be a non-empty list of strings')
    if len(texts) > max_items:
        raise ApiError(413, f'"x" has {len(texts)} texts, more than the {max_items} allowed per request')
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ApiError(400, f'"x"[{i}] is {type(text).__name__}, not a string')
        unicode_text(text, f'"x"[{i}]')
    if label is not None and not isinstance(label, str):
        raise ApiError(400, '"label" must be one of the model\'s labels (a string), or left out')
    return texts, label


@bp.post("/explain")
def explain():
    s = state()
    texts, label = _parse(s.config.max_items, s.config.client_timeout)
    predictor = s.manager.predictor
    if predictor is None:
        raise ApiError(503, LOADING)
    try:
        check_label(label, list(predictor.classes))
    except ConfigError as err:
        raise ApiError(400, str(err)) from None
    planned = plan(predictor, texts)
    budget = ROWS_PER_ITEM * s.config.max_items
    if len(planned.rows) > budget:
        raise ApiError(
            413,
            f"explaining these texts takes {len(planned.rows)} texts of work (one more per word the model reads), "
            f"more than the {budget} allowed per request; send fewer or shorter texts",
        )
    answer = computed(planned.rows)
    try:
        explained = weigh(planned, answer.scores, list(answer.classes), label)
    except ConfigError as err:  # the model was swapped for one without that label meanwhile
        raise ApiError(409, f"{err}; the model changed to {answer.model} while this request waited") from None
    return jsonify({"model": answer.model, "explanations": [e.as_dict() for e in explained]})
