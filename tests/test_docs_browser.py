"""/docs in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`) opens the
page from a real server, sends POST /predict with Swagger UI's "Try it out" and sees the answer.
Slow and needs the browser: `make test-slow`. BERTCLF_DOCS_SCREENSHOT=<file.png> keeps a screenshot."""

import json
import os
from pathlib import Path

import pytest

from servers import serving

pytestmark = pytest.mark.slow


def test_the_docs_page_sends_a_predict_and_shows_the_answer(browser, models, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    models_dir, _ = models
    with serving(models_dir, tmp_path / "server.log", "--threads", "4") as (port, _):
        wait = WebDriverWait(browser, 60)
        browser.get(f"http://127.0.0.1:{port}/docs/")
        operation = wait.until(ready.element_to_be_clickable((By.CSS_SELECTOR, "#operations-default-predict")))
        operation.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
        body = wait.until(
            ready.visibility_of_element_located((By.CSS_SELECTOR, "#operations-default-predict textarea"))
        )
        body.clear()
        body.send_keys(json.dumps({"x": ["apple banana lemon", "hammer saw"]}))
        operation.find_element(By.CSS_SELECTOR, "button.execute").click()
        status = wait.until(
            ready.visibility_of_element_located(
                (By.CSS_SELECTOR, "#operations-default-predict .live-responses-table .response .response-col_status")
            )
        )
        shown = operation.find_element(By.CSS_SELECTOR, ".live-responses-table .response-col_description pre").text
        screenshot = Path(os.environ.get("BERTCLF_DOCS_SCREENSHOT") or tmp_path / "docs.png")
        browser.save_screenshot(str(screenshot))
        print(f"docs: screenshot {screenshot}; status {status.text.strip()}; answer {shown[:200]}")
        assert status.text.strip() == "200"
        answer = json.loads(shown)
        assert list(answer) == ["model", "predictions", "probabilities"] and len(answer["predictions"]) == 2
    assert "/docs/swagger-ui-bundle.js" in (tmp_path / "server.log").read_text(), "the page's script came from us"
