"""The HTTP contract as an OpenAPI 3.1 document, served at /openapi.json and fuzzed by the tests.

Written by hand next to the routes rather than generated: it is the promise to clients, and every
status code a route can answer is listed here (the fuzz test fails on any answer it does not list).
"""

from typing import Any

from bertclf import __version__
from bertclf.config import ServeConfig
from bertclf.inference.explain import ROWS_PER_ITEM
from bertclf.serve.auth import PROTECTED_PATHS

JSON = "application/json"
ERROR = {"$ref": "#/components/schemas/Error"}
RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds after which a retry is likely to succeed",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}

WWW_AUTHENTICATE = {"WWW-Authenticate": {"description": "the token scheme (RFC 6750)", "schema": {"type": "string"}}}


def _error(description: str, headers: dict | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {JSON: {"schema": ERROR}}}
    if headers:
        response["headers"] = headers
    return response


def _protect(doc: dict[str, Any], config: ServeConfig) -> dict[str, Any]:
    """With api_tokens_file: the token schemes, and a 401 on each route that needs one."""
    if not config.api_tokens_file:
        return doc
    doc["components"]["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <token>"},
        "token": {"type": "apiKey", "in": "header", "name": "Token", "description": "seed 000's Token: <token>"},
    }
    protected = [*PROTECTED_PATHS, *(["/metrics"] if config.protect_metrics else [])]
    unauthorized = _error("no API token, or one that is not valid here", WWW_AUTHENTICATE)
    for path in protected:
        for operation in doc["paths"][path].values():  # GET and POST /predict alike
            operation["security"] = [{"bearer": []}, {"token": []}]
            operation["responses"]["401"] = unauthorized
    return doc


def document(config: ServeConfig) -> dict[str, Any]:
    """The OpenAPI 3.1 document of this server, with its limits (max_items) and auth filled in."""
    return _protect(_document(config), config)


def _document(config: ServeConfig) -> dict[str, Any]:
    # What a route that computes texts (POST /predict, POST /embed) answers when it cannot.
    texts_errors = {
        "400": _error('the body is not a JSON object with "x": a non-empty list of Unicode strings'),
        "408": _error(f"the body did not arrive whole within {config.client_timeout:g} s"),
        "413": _error(f"more than {config.max_items} texts, or a body over {config.max_body_bytes} bytes"),
        "415": _error("the Content-Type is not application/json"),
        "503": _error("the model is loading, the server is busy, or the request passed its deadline", RETRY_AFTER),
    }
    texts = {
        "type": "array",
        "items": {"type": "string"},
        "minItems": 1,
        "maxItems": config.max_items,
        "description": "the texts to classify; any Unicode text, empty and control characters included",
    }
    predict_request = {
        "type": "object",
        "required": ["x"],
        "properties": {
            "x": texts,
            "return_scores": {"type": "boolean", "default": False, "description": "add every class's probability"},
        },
        "example": {"x": ["How do I reverse a list?"]},
    }
    predict_response = {
        "type": "object",
        "required": ["model", "predictions", "probabilities"],
        "properties": {
            "model": {"type": "string", "description": "the name of the model that computed the answer"},
            "predictions": {
                "type": "array",
                "items": {"anyOf": [{"type": ["string", "null"]}, {"type": "array", "items": {"type": "string"}}]},
                "description": "a label per text; null where the model abstains (its top probability is below "
                "the model's min_confidence, see /model): leave that text to a person. A multi-label model "
                "gives a list per text: every label at or above its threshold, most probable first (maybe none)",
            },
            "probabilities": {
                "type": "array",
                "items": {
                    "anyOf": [
                        {"type": "number", "minimum": 0, "maximum": 1},
                        {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1}},
                    ]
                },
                "description": "the probability of each predicted label (multi-label: a list per text, as predictions)",
            },
            "scores": {
                "type": "array",
                "items": {"type": "object", "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1}},
                "description": "with return_scores, and always from a multi-label model: every class's probability, "
                "per text",
            },
        },
    }
    embed_request = {
        "type": "object",
        "required": ["x"],
        "properties": {
            "x": texts,
            "normalize": {"type": "boolean", "default": False, "description": "scale each vector to unit length"},
        },
        "example": {"x": ["How do I reverse a list?"], "normalize": True},
    }
    embed_response = {
        "type": "object",
        "required": ["model", "dim", "embeddings"],
        "properties": {
            "model": {"type": "string", "description": "the name of the model that computed the vectors"},
            "dim": {"type": "integer", "description": "each vector's length (the encoder's hidden size)"},
            "embeddings": {
                "type": "array",
                "items": {"type": "array", "items": {"type": "number"}},
                "description": "one vector per text: the mean of the encoder's last hidden states over its tokens",
            },
        },
    }
    explain_request = {
        "type": "object",
        "required": ["x"],
        "properties": {
            "x": texts,
            "label": {"type": "string", "description": "the label to explain (default: each text's most probable)"},
        },
        "example": {"x": ["My java class does not compile"], "label": "java"},
    }
    explain_word = {
        "type": "object",
        "required": ["word", "start", "end", "weight", "read"],
        "properties": {
            "word": {"type": "string"},
            "start": {"type": "integer", "description": "its first character's index in the text"},
            "end": {"type": "integer", "description": "one past its last character"},
            "weight": {"type": "number", "description": "the drop in the label's probability without this word"},
            "read": {"type": "boolean", "description": "false: past max_seq_len, the model does not read it"},
        },
    }
    explain_response = {
        "type": "object",
        "required": ["model", "explanations"],
        "properties": {
            "model": {"type": "string", "description": "the name of the model that computed the weights"},
            "explanations": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["label", "probability", "words"],
                    "properties": {
                        "label": {"type": "string", "description": "the label explained"},
                        "probability": {"type": "number", "minimum": 0, "maximum": 1},
                        "words": {"type": "array", "items": explain_word},
                    },
                },
                "description": "one per text, in input order",
            },
        },
    }
    label = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
    feedback_request = {
        "type": "object",
        "required": ["text", "label"],
        "properties": {
            "text": {
                "type": "string",
                "maxLength": config.feedback_max_text_chars,
                "description": "the text the model labelled (not blank)",
            },
            "label": {
                **label,
                "description": "its right label, one the model knows (a list of them for a multi-label model)",
            },
            "predicted": {**label, "description": "what the model answered, if the client kept it"},
            "model": {"type": "string", "description": 'the model that answered (the answer\'s "model")'},
        },
        "example": {"text": "git push was rejected", "label": "git", "predicted": "python"},
    }
    feedback_response = {
        "type": "object",
        "required": ["id", "label", "model"],
        "properties": {
            "id": {"type": "integer", "description": "the stored correction's number"},
            "label": label,
            "model": {"type": "string", "description": "the model being served when it was stored"},
        },
    }
    status: dict[str, Any] = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}
    ready = {**status, "properties": {"status": {"type": "string"}, "model": {"type": "string"}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "bertclf",
            "version": __version__,
            "description": 'A fine-tuned BERT-family text classifier. Every error answers {"error": "..."}.',
        },
        "paths": {
            "/predict": {
                "get": {
                    "summary": "classify texts given in the query string (a quick try from a browser)",
                    "operationId": "predict_get",
                    "parameters": [
                        {
                            "name": "text",
                            "in": "query",
                            "required": True,
                            "style": "form",
                            "explode": True,
                            "schema": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                            "description": f"a text to classify; repeat it for more (at most {config.max_items})",
                        },
                        {
                            "name": "return_scores",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "enum": ["true", "false"]},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "the same answer as POST /predict",
                            "content": {JSON: {"schema": predict_response}},
                        },
                        "400": _error("no text= in the query, or a bad return_scores"),
                        "413": _error(f"more than {config.max_items} texts"),
                        "503": texts_errors["503"],
                    },
                },
                "post": {
                    "summary": "classify texts, in input order",
                    "operationId": "predict",
                    "requestBody": {"required": True, "content": {JSON: {"schema": predict_request}}},
                    "responses": {
                        "200": {
                            "description": "a label and its probability per text",
                            "content": {JSON: {"schema": predict_response}},
                        },
                        **texts_errors,
                    },
                },
            },
            "/embed": {
                "post": {
                    "summary": "one vector per text from the fine-tuned encoder, in input order",
                    "operationId": "embed",
                    "requestBody": {"required": True, "content": {JSON: {"schema": embed_request}}},
                    "responses": {
                        "200": {
                            "description": "the vectors: JSON, or with Accept: application/octet-stream the raw "
                            "little-endian float32 matrix, row-major (np.frombuffer(body, '<f4').reshape(rows, dim))",
                            "content": {
                                JSON: {"schema": embed_response},
                                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                            },
                            "headers": {
                                "X-Embedding-Shape": {
                                    "description": "with application/octet-stream: rows,dim of the matrix",
                                    "schema": {"type": "string", "pattern": "^[0-9]+,[0-9]+$"},
                                }
                            },
                        },
                        **texts_errors,
                        "409": _error("the model's serving graph has no embedding output (exported before it had)"),
                    },
                }
            },
            "/": {
                "get": {
                    "summary": "a page to try the model: a text box, the labels with probability bars, the words "
                    "highlighted by /explain (self-contained, works offline; asks for the token when one is needed)",
                    "operationId": "page",
                    "responses": {
                        "200": {"description": "the page", "content": {"text/html": {"schema": {"type": "string"}}}}
                    },
                }
            },
            "/report": {
                "get": {
                    "summary": "the served model's report.html: metrics against TF-IDF, per class, confusion "
                    "matrix, calibration, learning curves, text lengths, the most confident mistakes explained",
                    "operationId": "report",
                    "responses": {
                        "200": {"description": "the page", "content": {"text/html": {"schema": {"type": "string"}}}},
                        "404": _error("the model was exported before models had a report"),
                        "503": _error("no model loaded yet"),
                    },
                }
            },
            "/explain": {
                "post": {
                    "summary": "each word's weight for a label (occlusion: the drop in its probability without "
                    "the word), per text in input order; a text of W words costs W + 1 texts of the batcher's work",
                    "operationId": "explain",
                    "requestBody": {"required": True, "content": {JSON: {"schema": explain_request}}},
                    "responses": {
                        "200": {
                            "description": "the words of each text with their weights",
                            "content": {JSON: {"schema": explain_response}},
                        },
                        **texts_errors,
                        "400": _error('the body is not {"x": [texts], "label": one of the model\'s labels}'),
                        "409": _error("the model was swapped for one without that label while the request waited"),
                        "413": _error(
                            f"more than {config.max_items} texts, more than {ROWS_PER_ITEM * config.max_items} texts "
                            f"of work (texts and their variants), or a body over {config.max_body_bytes} bytes"
                        ),
                    },
                }
            },
            "/feedback": {
                "post": {
                    "summary": "store a correction: the right label of a text, for the next training run",
                    "operationId": "feedback",
                    "requestBody": {"required": True, "content": {JSON: {"schema": feedback_request}}},
                    "responses": {
                        "201": {
                            "description": "stored",
                            "content": {JSON: {"schema": feedback_response}},
                        },
                        "400": _error("no text, or a label the model does not know (see --feedback_new_labels)"),
                        "408": _error(f"the body did not arrive whole within {config.client_timeout:g} s"),
                        "413": _error(f"a body over {config.max_body_bytes} bytes"),
                        "415": _error("the Content-Type is not application/json"),
                        "503": _error("the model is loading, or the store is busy or cannot be written", RETRY_AFTER),
                        "429": _error(
                            "this sender (API token, else client address) has stored its feedback_sender_max_rows "
                            f"({config.feedback_sender_max_rows}) or feedback_sender_max_bytes, or sent more than "
                            f"feedback_sender_per_minute ({config.feedback_sender_per_minute}) in a minute (then with "
                            "Retry-After)"
                        ),
                        "507": _error(
                            f"the store holds feedback_max_rows ({config.feedback_max_rows}) corrections or "
                            f"feedback_max_bytes ({config.feedback_max_bytes})"
                        ),
                    },
                }
            },
            "/health": {
                "get": {
                    "summary": "the process is up",
                    "operationId": "health",
                    "responses": {"200": {"description": "up", "content": {JSON: {"schema": status}}}},
                }
            },
            "/ready": {
                "get": {
                    "summary": "this worker can answer /predict now",
                    "operationId": "ready",
                    "responses": {
                        "200": {
                            "description": "a model is loaded and not stuck",
                            "content": {JSON: {"schema": ready}},
                        },
                        "503": _error("no model loaded yet (and why), or a forward pass is stuck"),
                    },
                }
            },
            "/model": {
                "get": {
                    "summary": "the served model: folder, labels, config, precision, last reload error",
                    "operationId": "model",
                    "responses": {
                        "200": {
                            "description": "the model's status",
                            "content": {
                                JSON: {
                                    "schema": {
                                        "type": "object",
                                        "required": ["ready", "model", "model_dir", "labels", "last_error"],
                                        "properties": {
                                            "ready": {"type": "boolean"},
                                            "model": {"type": ["string", "null"]},
                                            "model_dir": {
                                                "type": ["string", "null"],
                                                "description": "relative to the models folder",
                                            },
                                            "labels": {"type": ["array", "null"], "items": {"type": "string"}},
                                            "last_error": {"type": ["string", "null"]},
                                            "embedding_dim": {
                                                "type": ["integer", "null"],
                                                "description": "the length of POST /embed's vectors (null: the "
                                                "model's graph has no embedding output)",
                                            },
                                            "min_confidence": {
                                                "type": ["number", "null"],
                                                "description": "below this top probability the prediction is null",
                                            },
                                            "precision": {
                                                "type": ["string", "null"],
                                                "enum": ["fp32", "int8", "bf16", None],
                                                "description": "what the model computes in (serve --precision; "
                                                "auto picks the fastest that kept the test accuracy)",
                                            },
                                            "precision_reason": {
                                                "type": ["string", "null"],
                                                "description": "why this precision serves, in one sentence",
                                            },
                                            "runtime": {
                                                "type": ["string", "null"],
                                                "enum": ["onnxruntime", "openvino", "tensorflow", None],
                                            },
                                            "golden": {
                                                "type": ["object", "null"],
                                                "description": "the load's check of the model's golden texts "
                                                "against the probabilities the trained model gave at export "
                                                "(null: the folder has none)",
                                                "properties": {
                                                    "texts": {"type": "integer"},
                                                    "max_difference": {"type": ["number", "null"]},
                                                    "tolerance": {"type": "number"},
                                                },
                                            },
                                        },
                                    }
                                }
                            },
                        }
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics, summed over workers",
                    "operationId": "metrics",
                    "responses": {
                        "200": {
                            "description": "the text exposition format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "this document",
                    "operationId": "openapi",
                    "responses": {
                        "200": {"description": "OpenAPI 3.1", "content": {JSON: {"schema": {"type": "object"}}}}
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "additionalProperties": False,
                    "properties": {"error": {"type": "string", "description": "what is wrong and how to fix it"}},
                }
            }
        },
    }
