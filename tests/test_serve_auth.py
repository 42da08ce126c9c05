"""Token auth: off by default; with a tokens file, /predict and /model need a valid token (Bearer or
seed 000's Token header), probes and docs stay open, the file is re-read when it changes, and no
token ever reaches a log line, an error or /metrics."""

import json
import os
import subprocess
import sys
import time

import pytest

from bertclf.errors import ConfigError
from bertclf.serve.auth import TokenFileError, Tokens, hashed_line, parse_tokens, presented_token
from conftest import make_app, wait_until
from servers import JSON, request, serving

ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-fedcba9876543210"


def bump(path):
    """Make sure a rewrite within the same clock tick still reads as a change."""
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))


def test_the_file_takes_plain_tokens_hashes_and_comments():
    digests = parse_tokens(f"# the CI bot\n{ALICE}\n\n  {hashed_line(BOB)}  \n", "tokens.txt")
    assert len(digests) == 2
    assert parse_tokens("SHA256:" + hashed_line(BOB)[7:].upper(), "t") == digests[1:]


@pytest.mark.parametrize(
    "line, fragment",
    [
        ("s3cr3t-x", "shorter than 16 characters"),
        ("two words-0123456789abcdef", "one word of visible ASCII"),
        ("sha256:abc", "64 hex digits"),
        ("naïve-token-0123456789abcdef", "one word of visible ASCII"),
    ],
)
def test_a_bad_line_is_named_by_number_and_never_echoed(line, fragment):
    with pytest.raises(TokenFileError) as caught:
        parse_tokens(f"{ALICE}\n# note\n{line}\n", "tokens.txt")
    assert "tokens.txt line 3" in str(caught.value) and fragment in str(caught.value)
    assert line not in str(caught.value)
    assert isinstance(caught.value, ConfigError), "the CLI reports it as a user error"


@pytest.mark.parametrize(
    "headers, token",
    [
        ({"Authorization": f"Bearer {ALICE}"}, ALICE),
        ({"Authorization": f"bearer   {ALICE} "}, ALICE),
        ({"Token": ALICE}, ALICE),
        ({"Authorization": f"Basic {ALICE}", "Token": BOB}, BOB),
        ({"Authorization": "Bearer "}, None),
        ({}, None),
    ],
)
def test_the_token_a_request_carries(headers, token):
    assert presented_token(headers) == token


def test_tokens_are_re_read_when_the_file_changes_and_a_broken_change_keeps_them(tmp_path, caplog):
    path = tmp_path / "tokens.txt"
    path.write_text(ALICE + "\n")
    tokens = Tokens(path)
    assert tokens.allows(ALICE) and not tokens.allows(BOB) and not tokens.allows(None) and not tokens.allows("")
    path.write_text(hashed_line(BOB) + "\n")  # Alice revoked, Bob added
    bump(path)
    assert tokens.allows(BOB) and not tokens.allows(ALICE)
    path.write_text(f"{hashed_line(BOB)}\noops\n")  # a typo must neither open the server nor lock Bob out
    bump(path)
    assert tokens.allows(BOB) and not tokens.allows("oops")
    assert "line 2" in caplog.text and "stay in force" in caplog.text
    path.unlink()  # a vanished file fails closed: no token works (a revoked one must not)
    assert not tokens.allows(BOB) and tokens.unavailable is not None and "cannot read" in tokens.unavailable
    assert "protected routes answer 503" in caplog.text
    path.write_text(hashed_line(BOB) + "\n")  # back
    assert tokens.allows(BOB) and tokens.unavailable is None
    path.write_text("")  # an emptied file revokes every token
    bump(path)
    assert not tokens.allows(BOB)


def test_a_deleted_tokens_file_makes_protected_routes_answer_503(guarded):
    client, path = guarded
    assert client.post("/predict", json={"x": ["a"]}, headers={"Authorization": f"Bearer {ALICE}"}).status_code == 200
    path.unlink()
    answer = client.post("/predict", json={"x": ["a"]}, headers={"Authorization": f"Bearer {ALICE}"})
    assert answer.status_code == 503 and "cannot check API tokens" in answer.get_json()["error"]
    assert str(path) not in answer.get_json()["error"]
    assert client.get("/health").status_code == 200, "open routes stay open"


def test_a_writable_file_and_plain_tokens_are_warned_about(tmp_path, caplog):
    path = tmp_path / "tokens.txt"
    path.write_text(f"{ALICE}\n{hashed_line(BOB)}\n")
    path.chmod(0o666)
    with caplog.at_level("WARNING"):
        Tokens(path)
    assert "can be written by other users (mode 0o666)" in caplog.text and "chmod go-w" in caplog.text
    assert "1 token(s)" in caplog.text and "plain text" in caplog.text
    assert ALICE not in caplog.text


def test_a_missing_or_empty_file_stops_the_server_at_start(tmp_path):
    with pytest.raises(TokenFileError, match="cannot read the tokens file"):
        Tokens(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("# nobody yet\n")
    with pytest.raises(TokenFileError, match="holds no token"):
        Tokens(tmp_path / "empty.txt")
    result = subprocess.run(
        [sys.executable, "-m", "bertclf", "serve", "--api_tokens_file", str(tmp_path / "empty.txt")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "holds no token" in result.stderr and "python -m bertclf token" in result.stderr


@pytest.fixture
def guarded(models, tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_text(f"{ALICE}\n{hashed_line(BOB)}\n")
    app = make_app(models[0], api_tokens_file=str(path))
    wait_until(lambda: app.extensions["bertclf"].manager.ready)
    yield app.test_client(), path
    app.extensions["bertclf"].manager.stop()


def test_predict_and_model_need_a_valid_token(guarded, caplog):
    client, _ = guarded
    body = {"x": ["apple banana"]}
    missing = client.post("/predict", json=body)
    assert missing.status_code == 401 and "Authorization: Bearer <token>" in missing.get_json()["error"]
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="bertclf"'
    wrong = client.post("/predict", json=body, headers={"Authorization": "Bearer not-a-valid-token-at-all"})
    assert wrong.status_code == 401 and "not valid" in wrong.get_json()["error"]
    assert 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
    assert client.get("/model").status_code == 401
    assert client.post("/feedback", json={"text": "pear", "label": "fruit"}).status_code == 401
    assert client.post("/embed", json={"x": ["pear"]}).status_code == 401
    # Refused before the body is read: a bad body still answers 401, not 400.
    assert client.post("/predict", data="{not json", content_type="application/json").status_code == 401

    assert client.post("/predict", json=body, headers={"Authorization": f"Bearer {ALICE}"}).status_code == 200
    assert client.post("/predict", json=body, headers={"Token": BOB}).status_code == 200  # stored as its hash
    assert client.get("/model", headers={"Token": ALICE}).get_json()["ready"] is True
    for path in ("/health", "/ready", "/openapi.json", "/metrics"):
        assert client.get(path).status_code == 200, path
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'endpoint="/predict",status="401"' in metrics
    assert ALICE not in metrics and BOB not in metrics and ALICE not in caplog.text and BOB not in caplog.text


def test_metrics_can_be_protected_too(models, tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_text(ALICE + "\n")
    app = make_app(models[0], api_tokens_file=str(path), protect_metrics=True)
    try:
        client = app.test_client()
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": f"Bearer {ALICE}"}).status_code == 200
        assert client.get("/health").status_code == 200
    finally:
        app.extensions["bertclf"].manager.stop()


def test_without_a_tokens_file_nothing_needs_one(client):
    assert client.post("/predict", json={"x": ["apple"]}).status_code == 200


def test_the_token_command_stores_only_the_hash(tmp_path):
    path = tmp_path / "secrets" / "tokens.txt"
    result = subprocess.run(
        [sys.executable, "-m", "bertclf", "token", "--file", str(path), "--note", "ci\nbot"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert len(token) >= 40 and token not in path.read_text()
    assert path.read_text().splitlines() == ["# ci bot", hashed_line(token)]
    assert Tokens(path).allows(token)


def test_two_real_workers_take_tokens_and_see_a_revocation(models, tmp_path):
    """Each gunicorn worker checks tokens itself: both must refuse, accept, and see the file change."""
    path = tmp_path / "tokens.txt"
    path.write_text(f"{hashed_line(ALICE)}\n{hashed_line(BOB)}\n")
    log = tmp_path / "server.log"
    with serving(models[0], log, "--workers", "2", "--api_tokens_file", str(path)) as (port, _):
        body = json.dumps({"x": ["apple banana"]})

        def statuses(headers, n=12):  # new connections spread over both workers
            return {request(port, "POST", "/predict", body, {**JSON, **headers})[0] for _ in range(n)}

        assert statuses({}) == {401}
        assert statuses({"Authorization": f"Bearer {ALICE}"}) == {200}
        assert statuses({"Token": BOB}) == {200}
        status, data = request(port, "GET", "/model", headers={"Token": "wrong-token-0123456789"})
        assert status == 401 and json.loads(data)["error"].startswith("the API token is not valid")
        path.write_text(hashed_line(BOB) + "\n")  # revoke Alice, no restart
        bump(path)
        assert statuses({"Authorization": f"Bearer {ALICE}"}) == {401}
        assert statuses({"Token": BOB}) == {200}
        time.sleep(0.5)  # let the request log lines reach the file
    text = log.read_text()
    assert text.count('"status_code": 401') >= 12
    assert ALICE not in text and BOB not in text
