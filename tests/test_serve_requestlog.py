"""One JSON line per request, in the seed's format."""

import json
import logging


def test_one_json_log_line_per_request_in_the_seed_format(client):
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("bertclf.requests")
    logger.addHandler(handler)
    try:
        client.post("/predict", json={"x": ["apple"]}, headers={"User-Agent": "curl/7.58.0"})
        client.post("/predict", json={"x": []})
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(r.getMessage()) for r in records]
    assert [line["status_code"] for line in lines] == [200, 400]
    first = lines[0]
    assert list(first) == ["endpoint", "response", "status_code", "response_time", "user_ip", "user_agent"]
    assert first["endpoint"] == "/predict" and first["user_agent"] == "curl/7.58.0"
    assert first["response"]["predictions"] and first["response_time"] > 0
    assert "error" in lines[1]["response"]
