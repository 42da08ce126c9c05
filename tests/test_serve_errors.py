"""One JSON error shape for what no route handles: unknown endpoints, wrong methods, surprises."""

from bertclf.serve.errors import ApiError


def test_unknown_endpoint_and_method(client):
    assert client.get("/nope").get_json()["error"].startswith("no such endpoint")
    response = client.get("/embed")
    assert response.status_code == 405 and "POST" in response.get_json()["error"]
    assert set(response.headers["Allow"].split(", ")) == {"OPTIONS", "POST"}


def test_unexpected_failures_answer_500_in_the_one_shape(client):
    app = client.application

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret detail")

    @app.get("/teapot")
    def teapot():
        raise ApiError(418, "short and stout")

    response = client.get("/boom")
    assert response.status_code == 500
    assert response.get_json() == {"error": "internal error; the server log has the details"}
    assert client.get("/teapot").get_json() == {"error": "short and stout"}
