"""GET /: the page to try the model. In `make test`: it is served whole, with a policy that lets
only its own script and style run and talk only to this server. In a real browser (headless
Chromium, `make test-slow`: the browser's start-up and Debian's chromium package): a text gets its
labels with bars and its words highlighted, and a server with tokens gets the token asked for,
kept in the page only."""

import base64
import hashlib
import re

import pytest

from conftest import make_app, wait_until
from servers import predict, serving


def test_the_page_is_served_whole_with_a_strict_policy(client):
    response = client.get("/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "http://" not in page and "https://" not in page  # no CDN: works offline
    policy = response.headers["Content-Security-Policy"]
    script = re.search(r"<script>(.*?)</script>", page, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in policy and "connect-src 'self'" in policy
    assert "unsafe-inline" not in policy and "default-src 'none'" in policy
    assert "innerHTML" not in page  # texts are shown as text, never parsed as HTML


def test_the_page_needs_no_token_but_the_api_behind_it_does(tmp_path, models):
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("page-token-0123456789abcdef\n")
    app = make_app(models[0], api_tokens_file=str(tokens))
    wait_until(lambda: app.extensions["bertclf"].manager.ready)
    try:
        client = app.test_client()
        assert client.get("/").status_code == 200
        assert client.post("/predict", json={"x": ["apple"]}).status_code == 401
    finally:
        app.extensions["bertclf"].manager.stop()


def _classify(browser, port, text):
    from selenium.webdriver.common.by import By

    browser.get(f"http://127.0.0.1:{port}/")
    box = browser.find_element(By.ID, "text")
    box.send_keys(text)
    browser.find_element(By.ID, "go").click()


@pytest.mark.slow
def test_a_text_gets_its_labels_and_highlighted_words_in_a_browser(browser, models, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    models_dir, _ = models
    text = "apple banana <b>lemon</b>"
    with serving(models_dir, tmp_path / "server.log") as (port, _):
        _, answer = predict(port, [text])
        _classify(browser, port, text)
        wait = WebDriverWait(browser, 60)
        wait.until(ready.visibility_of_element_located((By.ID, "why-title")))
        names = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".label .name")]
        assert names[0] == answer["predictions"][0] and len(names) == 3
        words = browser.find_elements(By.CSS_SELECTOR, "#words span")
        assert [w.text for w in words] == ["apple", "banana", "<b>lemon</b>"]  # shown as text, not markup
        assert all(w.get_attribute("data-weight") for w in words)
        assert browser.find_element(By.ID, "why-title").text == f"Why {answer['predictions'][0]}"


@pytest.mark.slow
def test_the_page_asks_for_the_token_and_keeps_it_in_the_page_only(browser, models, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    models_dir, _ = models
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("page-token-0123456789abcdef\n")
    with serving(models_dir, tmp_path / "server.log", "--api_tokens_file", str(tokens)) as (port, _):
        _classify(browser, port, "hammer saw")
        wait = WebDriverWait(browser, 60)
        wait.until(ready.visibility_of_element_located((By.ID, "token-box")))
        browser.find_element(By.ID, "token").send_keys("page-token-0123456789abcdef")
        browser.find_element(By.ID, "token-go").click()
        wait.until(ready.visibility_of_element_located((By.ID, "why-title")))
        assert browser.find_elements(By.CSS_SELECTOR, ".label .name")
        kept = browser.execute_script(
            "return JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.cookie"
        )
        assert kept == "{}{}"
