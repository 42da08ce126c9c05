"""Feedback: POST /feedback stores corrections in SQLite (safe with two real gunicorn workers writing
at once), `feedback export` writes them as a training CSV, and `train --feedback` adds them to the
training split only."""

import csv
import json
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from bertclf.config import TrainConfig
from bertclf.feedback import (
    FeedbackError,
    FeedbackStore,
    Limits,
    StoreFull,
    corrections,
    decide,
    export_csv,
    label_counts,
)
from bertclf.training.data import Examples, add_feedback, load_splits
from conftest import make_app, make_texts, wait_until, write_csv
from servers import JSON, request, serving


@pytest.fixture
def served(models):
    models_dir, _ = models
    app = make_app(models_dir, feedback_max_rows=5)
    wait_until(lambda: app.extensions["bertclf"].manager.ready)
    yield app.test_client(), models_dir / "feedback.sqlite3", app
    app.extensions["bertclf"].manager.stop()


def test_a_correction_is_stored_with_what_and_which_model(served):
    client, db, app = served
    name = app.extensions["bertclf"].manager.predictor.name
    answer = client.post("/feedback", json={"text": "apple pie", "label": "fruit", "predicted": "tool", "model": "m1"})
    assert answer.status_code == 201 and answer.get_json() == {"id": 1, "label": "fruit", "model": name}
    row = sqlite3.connect(db).execute("SELECT text, label, predicted, model, served_model FROM feedback").fetchone()
    assert row == ("apple pie", "fruit", "tool", "m1", name)
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert 'bertclf_feedback_total{label="fruit"} 1.0' in client.get("/metrics").get_data(as_text=True)


@pytest.mark.parametrize(
    "body, status, fragment",
    [
        ({"text": "a", "label": "vegetable"}, 400, "not one the model knows (animal, fruit, tool); to add a class"),
        ({"text": "  ", "label": "fruit"}, 400, '"text" is empty'),
        ({"label": "fruit"}, 400, '"text" is missing'),
        ({"text": "a"}, 400, '"label" is missing'),
        ({"text": "a", "label": ["fruit"]}, 400, "must be a label (a string)"),
        ({"text": "a", "label": ""}, 400, '"label" is empty'),
        ({"text": "a", "label": "fruit\nanimal"}, 400, "one line"),
        ({"text": 5, "label": "fruit"}, 400, '"text" must be a string'),
        ({"text": "a", "label": "fruit", "model": ["x"]}, 400, '"model" must be a string'),
        (["a"], 400, "JSON object"),
    ],
)
def test_a_bad_correction_is_refused_with_the_fix(served, body, status, fragment):
    client, db, _ = served
    answer = client.post("/feedback", json=body)
    assert answer.status_code == status and fragment in answer.get_json()["error"]
    assert not db.exists() or not sqlite3.connect(db).execute("SELECT COUNT(*) FROM feedback").fetchone()[0]


def test_new_labels_when_allowed_and_a_full_store(models):
    models_dir, _ = models
    app = make_app(models_dir, feedback_new_labels=True, feedback_max_rows=2)
    try:
        wait_until(lambda: app.extensions["bertclf"].manager.ready)
        client = app.test_client()
        assert client.post("/feedback", json={"text": "carrot", "label": "vegetable"}).status_code == 201
        assert 'label="(new label)"' in client.get("/metrics").get_data(as_text=True)
        assert client.post("/feedback", json={"text": "pear", "label": "fruit"}).status_code == 201
        full = client.post("/feedback", json={"text": "plum", "label": "fruit"})
        assert full.status_code == 507 and "feedback export" in full.get_json()["error"]
    finally:
        app.extensions["bertclf"].manager.stop()


def test_a_store_that_cannot_be_written_is_a_503_that_says_so(models, tmp_path):
    models_dir, _ = models
    app = make_app(models_dir, feedback_db=str(tmp_path / "no" / "such" / "folder" / "f.sqlite3"))
    try:
        wait_until(lambda: app.extensions["bertclf"].manager.ready)
        answer = app.test_client().post("/feedback", json={"text": "pear", "label": "fruit"})
        assert answer.status_code == 503 and "cannot be written" in answer.get_json()["error"]
        assert str(tmp_path) not in answer.get_json()["error"], "no host path to the client"
    finally:
        app.extensions["bertclf"].manager.stop()


def test_export_and_stats(tmp_path):
    db = tmp_path / "feedback.sqlite3"
    store = FeedbackStore(db)
    for text, label in [("a b", "x"), ("c, d", "y"), ("a b", "y"), ('say "hi"\nthere', "x")]:
        store.add(text, label, None, None, "m")
    output = tmp_path / "out" / "feedback.csv"
    assert export_csv(db, output) == 4
    with open(output, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["text"], r["label"]) for r in rows] == [
        ("a b", "x"),
        ("c, d", "y"),
        ("a b", "y"),
        ('say "hi"\nthere', "x"),
    ]
    assert corrections(db).labels == [("c, d", "y"), ("a b", "y"), ('say "hi"\nthere', "x")], "one sender: its latest"
    assert label_counts(db) == {"x": 2, "y": 2}
    result = subprocess.run(
        [sys.executable, "-m", "bertclf", "feedback", "stats", "--feedback_db", str(db)], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.startswith("4 correction(s)")
    exported = subprocess.run(
        [sys.executable, "-m", "bertclf", "feedback", "export", "--feedback_db", str(db), "--output", "-"],
        capture_output=True,
        text=True,
    )
    assert exported.returncode == 0 and exported.stdout.replace("\r\n", "\n") == output.read_text().replace(
        "\r\n", "\n"
    )
    missing = subprocess.run(
        [sys.executable, "-m", "bertclf", "feedback", "export", "--models_dir", str(tmp_path / "none")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "POST /feedback to a running server creates it" in missing.stderr
    with pytest.raises(FeedbackError):
        corrections(tmp_path / "none.sqlite3")


def test_training_adds_corrections_to_the_training_split_only(tmp_path):
    texts, labels = make_texts(20)
    data = write_csv(tmp_path / "data.csv", zip(texts, labels, strict=True))
    cfg = TrainConfig(data=str(data), models_dir=str(tmp_path / "models"), feedback=True)
    plain = load_splits(TrainConfig(data=str(data)))
    (tmp_path / "models").mkdir()
    store = FeedbackStore(tmp_path / "models" / "feedback.sqlite3")
    training_text, test_text = plain.train.texts[0], plain.test.texts[0]
    wrong = next(label for label in plain.classes if label != plain.train.labels[0])
    store.add("a brand new text", plain.classes[0], None, None, None)
    store.add(training_text, wrong, None, None, None)  # corrects a training label
    store.add(test_text, plain.classes[0], None, None, None)  # would leak into the scores
    splits = load_splits(cfg)
    assert splits.validation.texts == plain.validation.texts and splits.test.texts == plain.test.texts
    assert splits.test.labels == plain.test.labels
    assert len(splits.train) == len(plain.train) + 1 and splits.train.texts[-1] == "a brand new text"
    assert splits.train.labels[0] == wrong
    assert splits.feedback is not None
    assert {
        k: splits.feedback[k] for k in ("corrections", "added", "relabelled", "left_out_in_validation_or_test")
    } == {
        "corrections": 3,
        "added": 1,
        "relabelled": 1,
        "left_out_in_validation_or_test": 1,
    }
    # A label only feedback knows becomes a class, said in the record.
    store.add("a carrot", "vegetable", None, None, None)
    assert load_splits(cfg).feedback["new_labels"] == ["vegetable"]


def test_training_reads_the_store_bertclf_feedback_db_names(tmp_path, monkeypatch):
    # serve and `feedback export` honour BERTCLF_FEEDBACK_DB; `train --feedback` must find the same store.
    texts, labels = make_texts(20)
    data = write_csv(tmp_path / "data.csv", zip(texts, labels, strict=True))
    store = FeedbackStore(tmp_path / "elsewhere.sqlite3")
    store.add("a brand new text", labels[0], None, None, None)
    monkeypatch.setenv("BERTCLF_FEEDBACK_DB", str(store.path))
    splits = load_splits(TrainConfig(data=str(data), models_dir=str(tmp_path / "models"), feedback=True))
    assert splits.train.texts[-1] == "a brand new text" and splits.feedback["added"] == 1
    given = FeedbackStore(tmp_path / "given.sqlite3")  # --feedback_db wins over the variable
    given.add("another new text", labels[0], None, None, None)
    cfg = TrainConfig(data=str(data), feedback=True, feedback_db=str(given.path))
    assert load_splits(cfg).train.texts[-1] == "another new text"


def test_add_feedback_of_an_empty_store_changes_nothing(tmp_path):
    FeedbackStore(tmp_path / "f.sqlite3").last_id()  # creates the table
    train = Examples(["a"], ["x"], "d.csv")
    empty = Examples([], [], "")
    cfg = TrainConfig(feedback=True, feedback_db=str(tmp_path / "f.sqlite3"))
    same, record = add_feedback(train, empty, empty, cfg)
    assert same.texts == ["a"] and record["corrections"] == 0


def test_two_real_workers_write_at_once_and_lose_nothing(models, tmp_path):
    models_dir, _ = models
    db = tmp_path / "feedback.sqlite3"
    log = tmp_path / "server.log"
    clients, each = 8, 25
    failures: list = []
    options = ["--workers", "2", "--feedback_db", str(db), "--feedback_sender_per_minute", "0"]  # one address
    with serving(models_dir, log, *options) as (port, _):

        def client(k):
            for i in range(each):
                body = json.dumps({"text": f"client {k} text {i}", "label": ["animal", "fruit", "tool"][i % 3]})
                status, data = request(port, "POST", "/feedback", body, JSON)
                if status != 201:
                    failures.append((status, data))

        started = time.perf_counter()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - started
        _, data = request(port, "GET", "/metrics")
    assert not failures, failures[:3]
    rows = sqlite3.connect(db).execute("SELECT id, text FROM feedback").fetchall()
    assert len(rows) == clients * each and len({text for _, text in rows}) == clients * each
    assert sorted(i for i, _ in rows) == list(range(1, clients * each + 1))
    counted = [
        float(line.split()[1]) for line in data.decode().splitlines() if line.startswith("bertclf_feedback_total")
    ]
    assert sum(counted) == clients * each, "both workers' counts summed"
    rate = clients * each / seconds
    print(f"feedback: {clients * each} writes from {clients} clients over 2 workers in {seconds:.2f} s ({rate:.0f}/s)")


def test_training_reads_an_exported_csv_too(tmp_path):
    texts, labels = make_texts(20)
    data = write_csv(tmp_path / "data.csv", zip(texts, labels, strict=True))
    plain = load_splits(TrainConfig(data=str(data)))
    exported = write_csv(
        tmp_path / "feedback.csv",
        [("a new text", plain.classes[0]), ("a new text", plain.classes[1]), (plain.test.texts[0], plain.classes[0])],
    )
    splits = load_splits(TrainConfig(data=str(data), feedback=True, feedback_db=str(exported)))
    assert splits.train.texts[-1] == "a new text" and splits.train.labels[-1] == plain.classes[1], "the last row wins"
    assert splits.feedback["added"] == 1 and splits.feedback["left_out_in_validation_or_test"] == 1


def _write_at(start, path, each, max_rows, results):
    """One writer process: waits for the common start, then stores `each` corrections."""
    while time.time() < start:
        pass
    outcome = []
    try:
        store = FeedbackStore(path)
        for i in range(each):
            try:
                store.add(f"text {i}", "x", None, None, None, limits=Limits(max_rows=max_rows))
                outcome.append("stored")
            except StoreFull:
                outcome.append("full")
    except Exception as err:  # reported to the test, which names it
        outcome.append(repr(err))
    results.put(outcome)


@pytest.mark.integration  # trains a model or runs processes: not the unit tier
def test_many_writer_processes_open_a_new_store_at_once_wait_and_keep_the_cap_exact(tmp_path):
    # Two failures seen with several gunicorn workers: a worker opening a new store while another
    # turned it to WAL got "database is locked" at once (about 1 round in 20 here), and reading the
    # cap, then writing in another statement let the store grow past it.
    context = multiprocessing.get_context("fork")
    processes, each, max_rows, rounds = 6, 5, 20, 60
    for round_ in range(rounds):
        path = tmp_path / f"{round_}.sqlite3"
        results = context.Queue()
        start = time.time() + 0.05
        workers = [
            context.Process(target=_write_at, args=(start, path, each, max_rows, results)) for _ in range(processes)
        ]
        for worker in workers:
            worker.start()
        outcomes = [item for _ in workers for item in results.get(timeout=60)]
        for worker in workers:
            worker.join()
        errors = [item for item in outcomes if item not in ("stored", "full")]
        assert not errors, f"round {round_}: {errors[:2]}"
        assert outcomes.count("stored") == max_rows and outcomes.count("full") == processes * each - max_rows
        assert FeedbackStore(path).last_id() == max_rows


def test_threads_of_one_worker_keep_the_cap_exact(tmp_path):
    # A gunicorn worker answers on several threads, each with its own connection: 8 at once, a cap of
    # 50, 160 tries: exactly 50 stored (once 52 were: the cap was read, then written, in two statements).
    for round_ in range(5):
        store = FeedbackStore(tmp_path / f"{round_}.sqlite3")
        barrier, outcomes = threading.Barrier(8), []

        def write(k, store=store, barrier=barrier, outcomes=outcomes):
            barrier.wait()
            for i in range(20):
                try:
                    store.add(f"text {k} {i}", "x", None, None, None, limits=Limits(max_rows=50))
                    outcomes.append("stored")
                except StoreFull:
                    outcomes.append("full")

        threads = [threading.Thread(target=write, args=(k,)) for k in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert outcomes.count("stored") == 50 and outcomes.count("full") == 110, round_
        with sqlite3.connect(store.path) as connection:
            assert connection.execute("SELECT COUNT(*) FROM feedback").fetchone()[0] == 50


def test_a_texts_label_is_the_majority_of_its_distinct_senders():
    rows = [
        ("t1", "x", "a"),
        ("t1", "y", "b"),
        ("t1", "y", "c"),  # two senders against one
        ("t2", "x", "a"),
        ("t2", "x", "a"),
        ("t2", "x", "a"),
        ("t2", "y", "b"),  # repeating does not add votes: a tie
        ("t3", "x", "a"),
        ("t3", "y", "a"),  # a sender corrects itself: its latest counts
    ]
    decided = decide(rows)
    assert decided.labels == [("t1", "y"), ("t3", "y")]
    assert decided.conflicts == [{"text": "t2", "votes": {"x": 1, "y": 1}}]
    assert decided.corrections == 9 and decided.senders == 3


def test_bounds_per_sender_and_for_the_store(models):
    models_dir, _ = models
    app = make_app(
        models_dir,
        forwarded_allow_ips="127.0.0.1",
        feedback_sender_max_rows=3,
        feedback_sender_per_minute=5,
        feedback_max_text_chars=50,
    )
    try:
        wait_until(lambda: app.extensions["bertclf"].manager.ready)
        client = app.test_client()

        def send(text, address):
            return client.post("/feedback", json={"text": text, "label": "fruit"}, headers={"X-Forwarded-For": address})

        assert [send(f"t{i}", "10.0.0.1").status_code for i in range(3)] == [201] * 3
        capped = send("t3", "10.0.0.1")
        assert capped.status_code == 429 and "its 3 corrections" in capped.get_json()["error"]
        assert send("t3", "10.0.0.2").status_code == 201, "one sender at its bound does not lock out another"
        long = send("a" * 51, "10.0.0.3")
        assert long.status_code == 400 and "longer than 50 characters" in long.get_json()["error"]
    finally:
        app.extensions["bertclf"].manager.stop()
    db = models_dir / "feedback.sqlite3"
    senders = [row[0] for row in sqlite3.connect(db).execute("SELECT sender FROM feedback ORDER BY id")]
    assert senders == ["ip:10.0.0.1"] * 3 + ["ip:10.0.0.2"]
    assert os.stat(db).st_mode & 0o777 == 0o600, "what clients sent is this user's to read"

    fast = make_app(models_dir, feedback_sender_per_minute=2, feedback_db=str(models_dir / "rate.sqlite3"))
    try:
        wait_until(lambda: fast.extensions["bertclf"].manager.ready)
        client = fast.test_client()
        assert [client.post("/feedback", json={"text": f"r{i}", "label": "fruit"}).status_code for i in range(2)] == [
            201,
            201,
        ]
        limited = client.post("/feedback", json={"text": "r2", "label": "fruit"})
        assert limited.status_code == 429 and 1 <= int(limited.headers["Retry-After"]) <= 61
        assert "2 corrections a minute" in limited.get_json()["error"]
    finally:
        fast.extensions["bertclf"].manager.stop()


def test_the_store_is_bounded_in_bytes(tmp_path):
    store = FeedbackStore(tmp_path / "f.sqlite3")
    limits = Limits(max_bytes=200_000)
    stored = 0
    with pytest.raises(StoreFull, match="200000 bytes"):
        for i in range(1000):
            store.add(f"{i} " + "x" * 9_000, "fruit", None, None, None, "ip:1", limits)
            stored += 1
    assert 5 < stored < 25 and os.path.getsize(tmp_path / "f.sqlite3") <= 200_000


def test_a_sender_is_the_tokens_id_never_the_token(models, tmp_path):
    from bertclf.serve.auth import hashed_line, token_id

    models_dir, _ = models
    token = "s3cret-token-for-feedback-0123456789"
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(hashed_line(token) + "\n")
    app = make_app(models_dir, api_tokens_file=str(tokens))
    try:
        wait_until(lambda: app.extensions["bertclf"].manager.ready)
        answer = app.test_client().post(
            "/feedback", json={"text": "pear", "label": "fruit"}, headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status_code == 201
    finally:
        app.extensions["bertclf"].manager.stop()
    db = models_dir / "feedback.sqlite3"
    raw = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))  # the store and its WAL
    assert token.encode() not in raw
    assert sqlite3.connect(db).execute("SELECT sender FROM feedback").fetchall() == [(token_id(token),)]


def test_a_store_from_before_senders_is_brought_up_to_date(tmp_path):
    db = tmp_path / "old.sqlite3"
    old = sqlite3.connect(db)
    old.execute(
        "CREATE TABLE feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, created TEXT NOT NULL, text TEXT NOT NULL, "
        "label TEXT NOT NULL, predicted TEXT, model TEXT, served_model TEXT)"
    )
    old.execute("INSERT INTO feedback (created, text, label) VALUES ('2026-01-01T00:00:00+00:00', 'a', 'x')")
    old.commit()
    old.close()
    assert corrections(db).labels == [("a", "x")], "read as it is"
    FeedbackStore(db).add("a", "y", None, None, None, "ip:1", Limits(sender_rows=5))
    decided = corrections(db)
    assert decided.conflicts == [{"text": "a", "votes": {"x": 1, "y": 1}}] and decided.senders == 2


def test_training_leaves_conflicts_out_and_reads_senders_from_an_export(tmp_path, caplog):
    texts, labels = make_texts(20)
    data = write_csv(tmp_path / "data.csv", zip(texts, labels, strict=True))
    store = FeedbackStore(tmp_path / "f.sqlite3")
    for text, label, sender in [("new a", "fruit", "s1"), ("new a", "tool", "s2"), ("new b", "tool", "s1")]:
        store.add(text, label, None, None, None, sender)
    for db in (tmp_path / "f.sqlite3", tmp_path / "export.csv"):
        if db.suffix == ".csv":
            export_csv(tmp_path / "f.sqlite3", db)
        with caplog.at_level("WARNING"):
            splits = load_splits(TrainConfig(data=str(data), feedback=True, feedback_db=str(db)))
        assert "new a" not in splits.train.texts and "new b" in splits.train.texts
        assert splits.feedback["conflicts"] == 1 and splits.feedback["senders"] == 2
        assert "senders disagree" in caplog.text


def test_an_export_never_holds_a_formula_and_training_reads_the_texts_back(tmp_path):
    store = FeedbackStore(tmp_path / "f.sqlite3")
    store.add("=cmd|'/c calc'!A1", "fruit", "@SUM(1)", None, None, "ip:1")
    store.add("'quoted", "tool", None, None, None, "ip:1")
    export_csv(tmp_path / "f.sqlite3", tmp_path / "export.csv")
    with open(tmp_path / "export.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["text"] for r in rows] == ["'=cmd|'/c calc'!A1", "''quoted"] and rows[0]["predicted"] == "'@SUM(1)"
    from bertclf.feedback import exported_rows

    assert exported_rows(tmp_path / "export.csv") == [
        ("=cmd|'/c calc'!A1", "fruit", "ip:1"),
        ("'quoted", "tool", "ip:1"),
    ]
