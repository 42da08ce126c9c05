"""report.html: every export writes one self-contained page about the model (no script, no CDN,
opens from disk, every text escaped), and the server shows the served model's at /report."""

import json
import re
import shutil

from bertclf.training.report import write_report
from conftest import make_app, wait_until


def test_every_export_writes_a_self_contained_report(trained_models):
    _, folder = trained_models
    page = (folder / "report.html").read_text(encoding="utf-8")
    config = json.loads((folder / "model_config.json").read_text())
    assert "<script" not in page and not re.search(r"(src|href)=['\"]https?:", page)  # opens offline
    assert "TF-IDF + logistic regression" in page and "Per class" in page and "Confusion matrix" in page
    assert all(f"<td>{name}</td>" in page for name in config["classes"])
    assert "Learning curves" in page and "<svg" in page and "Text length" in page
    assert "data:image/png;base64," in page  # the calibration diagram, embedded
    assert "most confident mistakes" in page or "None on the test split" in page


def test_mistakes_are_explained_and_their_texts_escaped(tmp_path, trained_models):
    _, source = trained_models
    folder = tmp_path / source.name
    shutil.copytree(source, folder)
    config = json.loads((folder / "model_config.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())
    texts = ["<script>alert(1)</script> apple banana lemon", "hammer saw", "cat dog"]
    truth = [["tool"], ["tool"], ["animal"]]  # the first is a mistake the model is sure of
    page = write_report(folder, config, metrics, texts, truth).read_text()
    assert "The 1 most confident mistakes" in page and "1 of 3 test texts are wrong" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
    assert "said fruit" in page and "is tool" in page and "class='word' title='+" in page


def test_the_server_shows_the_served_models_report_protected_and_inert(tmp_path, models):
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("report-token-0123456789abcdef\n")
    app = make_app(models[0], api_tokens_file=str(tokens))
    wait_until(lambda: app.extensions["bertclf"].manager.ready)
    try:
        client = app.test_client()
        assert client.get("/report").status_code == 401
        response = client.get("/report", headers={"Authorization": "Bearer report-token-0123456789abcdef"})
        assert response.status_code == 200 and response.mimetype == "text/html"
        assert b"Per class" in response.data
        assert "script-src" not in response.headers["Content-Security-Policy"]  # default-src 'none': no script
        (models[1] / "report.html").unlink()
        missing = client.get("/report", headers={"Authorization": "Bearer report-token-0123456789abcdef"})
        assert missing.status_code == 404 and "exported before models had a report" in missing.get_json()["error"]
    finally:
        app.extensions["bertclf"].manager.stop()
