"""The OpenAPI document describes every route, and a property-based fuzzer (schemathesis) driven by
it finds no answer the document does not promise, from a real gunicorn server with a tiny model."""

import json
import shutil

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup

from bertclf.config import ServeConfig
from bertclf.serve.openapi import document
from conftest import make_app, wait_until
from servers import serving


def test_every_route_is_documented(models):
    app = make_app(models[0])
    # /docs is the Swagger UI page and its files, not part of the API it documents.
    routes = {
        rule.rule for rule in app.url_map.iter_rules() if rule.endpoint != "static" and rule.endpoint != "docs.show"
    }
    spec = document(ServeConfig(max_items=8))
    assert routes == set(spec["paths"])
    assert (
        spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]["x"][
            "maxItems"
        ]
        == 8
    )
    schemathesis.openapi.from_dict(spec)  # a valid OpenAPI 3.1 document, or this raises
    assert app.test_client().get("/openapi.json").get_json() == document(app.extensions["bertclf"].config)


@pytest.fixture(scope="module")
def served_schema(tmp_path_factory, trained_models):
    """A real server (gunicorn, one worker, the tiny model) and the schema it serves."""
    source, _ = trained_models
    models = tmp_path_factory.mktemp("fuzz") / "models"
    shutil.copytree(source, models)
    options = ["--max_items", "16", "--max_body_bytes", "8192"]
    with serving(models, models.parent / "server.log", *options, ready_in_a_row=1) as (port, _):
        yield schemathesis.openapi.from_url(f"http://127.0.0.1:{port}/openapi.json")


@schemathesis.check
def no_server_error_but_a_documented_503(ctx, response, case):
    """A fuzzed request may be refused (4xx) or find the server busy (503), never break it."""
    if response.status_code >= 500 and response.status_code != 503:
        raise AssertionError(f"{response.status_code} for {case.method} {case.path}: {response.text[:200]}")


CHECKS = [
    no_server_error_but_a_documented_503,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def fuzz(schema, max_examples, checks=CHECKS):
    """Valid requests to every route, and invalid ones where there is something to get wrong (a
    body), `max_examples` of each, every answer through `checks`."""
    # Driven with Hypothesis directly: schemathesis's pytest plugin does not run under pytest 9.
    operations = [result.ok() for result in schema.get_all_operations()]
    # (schemathesis leaves out the document's own route.)
    assert {op.label for op in operations} >= {
        "POST /predict",
        "GET /health",
        "GET /ready",
        "GET /model",
        "GET /metrics",
    }
    runs = [(op, schemathesis.GenerationMode.POSITIVE) for op in operations]
    runs += [(op, schemathesis.GenerationMode.NEGATIVE) for op in operations if op.method.upper() == "POST"]
    for operation, mode in runs:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case):
            case.call_and_validate(checks=checks)

        run()


def test_fuzzed_requests_get_only_documented_answers(served_schema):
    fuzz(served_schema, max_examples=30)


def test_an_answer_the_document_does_not_list_fails_the_checks(models):
    app = make_app(models[0], max_items=4)
    config = app.extensions["bertclf"].config
    wait_until(lambda: app.extensions["bertclf"].manager.ready)
    spec = document(config)
    without_413 = json.loads(json.dumps(spec))
    del without_413["paths"]["/predict"]["post"]["responses"]["413"]
    for promised, expected_ok in ((spec, True), (without_413, False)):
        case = schemathesis.openapi.from_dict(promised)["/predict"]["POST"].Case(
            body={"x": ["a"] * 5}, media_type="application/json"
        )
        response = case.call(app=app)
        assert response.status_code == 413
        if expected_ok:
            case.validate_response(response, checks=CHECKS)
        else:
            with pytest.raises(
                FailureGroup,
                match=r"Undocumented status code\n\n +Received: 413\n +Documented: 200, 400, 408, 415, 503",
            ):
                case.validate_response(response, checks=CHECKS)


def test_a_server_that_needs_tokens_documents_them_and_its_401(models, tmp_path):
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("a-token-of-twenty-characters\n")
    app = make_app(models[0], api_tokens_file=str(tokens))
    spec = app.test_client().get("/openapi.json").get_json()
    schemathesis.openapi.from_dict(spec)
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "token"}
    needs = {path for path, item in spec["paths"].items() for op in item.values() if "security" in op}
    assert needs == {"/predict", "/embed", "/explain", "/feedback", "/model", "/report"}
    case = schemathesis.openapi.from_dict(spec)["/predict"]["POST"].Case(
        body={"x": ["a"]}, media_type="application/json"
    )
    response = case.call(app=app)
    assert response.status_code == 401
    case.validate_response(response, checks=CHECKS)
    app.extensions["bertclf"].manager.stop()
    protected = document(ServeConfig(api_tokens_file=str(tokens), protect_metrics=True))
    assert "401" in protected["paths"]["/metrics"]["get"]["responses"]
