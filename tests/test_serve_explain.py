"""POST /explain: the weights `predict --explain` computes, through the batcher, with /predict's
auth, limits and error shapes, and a bound on the work one request may ask for."""

import json

import pytest

from bertclf.inference.explain import explain
from bertclf.inference.predictor import Predictor
from conftest import make_app, wait_until


def post(client, body, **headers):
    response = client.post("/explain", data=json.dumps(body), content_type="application/json", headers=headers)
    return response.status_code, response.get_json()


def test_explain_gives_each_words_weight_as_the_predictor_does(client, trained_models):
    _, folder = trained_models
    texts = ["apple banana the", "hammer and a saw"]
    status, body = post(client, {"x": texts})
    assert status == 200, body
    expected = explain(Predictor(folder), texts)
    assert [e["label"] for e in body["explanations"]] == [e.label for e in expected]
    for got, want in zip(body["explanations"], expected, strict=True):
        assert [w["word"] for w in got["words"]] == [w["word"] for w in want.words]
        assert [w["weight"] for w in got["words"]] == pytest.approx([w["weight"] for w in want.words], abs=1e-4)
    status, named = post(client, {"x": texts[:1], "label": "tool"})
    assert status == 200 and named["explanations"][0]["label"] == "tool"


@pytest.mark.parametrize(
    "body, status, fragment",
    [
        ({"x": []}, 400, "non-empty list"),
        ({"x": "apple"}, 400, "non-empty list"),
        ({"x": [1]}, 400, "not a string"),
        ({"x": ["apple"], "label": 3}, 400, '"label" must be'),
        ({"x": ["apple"], "label": "vegetable"}, 400, "not one of the model's labels"),
        ({"y": ["apple"]}, 400, 'expected a JSON object with "x"'),
        ({"x": ["a"] * 9}, 413, "more than the 8 allowed"),
        ({"x": [" ".join(["apple"] * 20)] * 8}, 413, "texts of work"),  # 8 x 21 rows, past 16 x 8
    ],
)
def test_explain_has_the_limits_of_predict_and_bounds_its_work(client, body, status, fragment):
    got, answer = post(client, body)
    assert got == status and fragment in answer["error"], answer


def test_explain_needs_a_token_when_the_server_does(tmp_path, models):
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("explain-token-0123456789abcdef\n")
    app = make_app(models[0], api_tokens_file=str(tokens))
    wait_until(lambda: app.extensions["bertclf"].manager.ready)
    try:
        client = app.test_client()
        assert post(client, {"x": ["apple"]})[0] == 401
        status, body = post(client, {"x": ["apple"]}, Authorization="Bearer explain-token-0123456789abcdef")
        assert status == 200 and body["explanations"][0]["words"][0]["word"] == "apple"
    finally:
        app.extensions["bertclf"].manager.stop()


def test_explain_is_in_the_openapi_document(client):
    document = client.get("/openapi.json").get_json()
    operation = document["paths"]["/explain"]["post"]
    assert operation["operationId"] == "explain" and {"200", "400", "413", "503"} <= set(operation["responses"])
