"""POST /embed (seed 000's /text endpoint): one vector per text from the fine-tuned encoder.

The vector is the mean of the last hidden states over the text's real tokens, computed by the
serving graph in the same pass as the probabilities (runtime.EMBEDDING), so it goes through the
same batching, deadlines and limits as /predict, and a batch that holds an /embed request costs no
second forward pass. JSON by default; with `Accept: application/octet-stream` the body is the raw
little-endian float32 matrix, row-major, as seed 000's clients read it
(`np.frombuffer(body, "<f4").reshape(rows, dim)`), its shape in the X-Embedding-Shape header.
"""

import numpy as np
from flask import Blueprint, Response, jsonify, request

from bertclf.registry import NoEmbeddings
from bertclf.serve.errors import ApiError
from bertclf.serve.routes import LOADING, computed, parse_texts, state

bp = Blueprint("embed", __name__)
EXAMPLE = '{"x": ["How do I reverse a list?"], "normalize": true}'
BINARY = "application/octet-stream"
SHAPE_HEADER = "X-Embedding-Shape"


def _missing(error: Exception | str) -> ApiError:
    return ApiError(409, str(error))


@bp.post("/embed")
def embed():
    s = state()
    texts, normalize = parse_texts(s.config.max_items, s.config.client_timeout, "normalize", EXAMPLE)
    predictor = s.manager.predictor
    if predictor is None:
        raise ApiError(503, LOADING)
    if getattr(predictor, "embedding_dim", None) is None:  # asked before queueing: no pass is spent on it
        raise _missing(
            f"the model {predictor.name} gives no embeddings: it was exported before serving graphs had them; "
            "write its graph again with `python -m bertclf export-onnx --model_dir <its folder>`"
        )
    try:
        answer = computed(texts, embed=True)
    except NoEmbeddings as err:  # swapped for such a model meanwhile
        raise _missing(err) from None
    vectors = np.asarray(answer.embeddings, dtype=np.float32)
    if normalize:
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = (vectors / np.where(norms > 0, norms, 1)).astype(np.float32)
    rows, dim = vectors.shape
    if request.accept_mimetypes.best_match(["application/json", BINARY]) == BINARY:
        response = Response(vectors.astype("<f4").tobytes(), mimetype=BINARY)
        response.headers[SHAPE_HEADER] = f"{rows},{dim}"
        response.headers["X-Model"] = answer.model.encode("ascii", "replace").decode()
        return response
    return jsonify({"model": answer.model, "dim": dim, "embeddings": vectors.tolist()})
