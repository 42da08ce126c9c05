"""Prometheus metrics: requests by endpoint and status, batch sizes, the served model."""


def test_metrics_count_requests_batches_and_model(client):
    client.post("/predict", json={"x": ["apple", "saw"]})
    client.post("/predict", json={"x": []})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'bertclf_requests_total{endpoint="/predict",status="200"} 1.0' in text
    assert 'bertclf_requests_total{endpoint="/predict",status="400"} 1.0' in text
    assert "bertclf_batch_texts_count" in text and 'bertclf_model_info{id="' in text
    assert "bertclf_ready 1.0" in text


def test_metrics_count_texts_cut_at_max_seq_len(client):
    # The tiny model reads 32 tokens: a 100-word text is cut, short ones are not.
    client.post("/predict", json={"x": ["apple", " ".join(["banana"] * 100), "saw " * 29]})
    text = client.get("/metrics").get_data(as_text=True)
    assert "bertclf_truncated_texts_total 1.0" in text


def test_made_up_paths_do_not_grow_the_metrics(client):
    # /docs/<path:path> matches any path: labelled by path, 5,200 of them made /metrics 9 MB.
    for i in range(200):
        client.get(f"/docs/made-up-{i}")
        client.get(f"/nowhere/{i}")
    text = client.get("/metrics").get_data(as_text=True)
    assert "made-up" not in text and "nowhere" not in text
    endpoints = {line.split('endpoint="')[1].split('"')[0] for line in text.splitlines() if 'endpoint="' in line}
    assert len(endpoints) <= 5, endpoints
    assert 'endpoint="unknown",status="404"} 200.0' in text
