"""The docs site: its reference tables are generated from the code (so every setting, command and
make target is there), it builds strictly, and it works offline in a real browser."""

import dataclasses
import http.server
import importlib.util
import re
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import pytest

from bertclf.cli import COMMANDS
from bertclf.config import ServeConfig, TrainConfig, env_name

ROOT = Path(__file__).resolve().parents[1]


def load_hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_reference_tables_hold_every_setting_command_and_target():
    hooks = load_hooks()
    page = hooks.render((ROOT / "docs" / "reference.md").read_text())
    assert "<!-- generated:" not in page, "every marker is replaced"
    for field in dataclasses.fields(TrainConfig):
        assert f"| `--{field.name}` |" in page, field.name
    for field in dataclasses.fields(ServeConfig):
        assert f"| `--{field.name}` | `{env_name(field.name)}` |" in page, field.name
    for command in COMMANDS:
        assert f"### `python -m bertclf {command.name}`" in page
    assert "| `DATA` | `--data` | `data/sample.csv` |" in page, "make variables come from the Makefile"
    targets = re.findall(r"^([a-zA-Z_-]+):[^\n#]*## ", (ROOT / "Makefile").read_text(), re.M)
    assert targets and all(f"| `make {target}` |" in page for target in targets)


def test_an_unknown_table_fails_the_build():
    with pytest.raises(ValueError, match="unknown generated table 'nonsense'"):
        load_hooks().render("text\n<!-- generated: nonsense -->\n")


def test_a_malformed_marker_fails_the_build_instead_of_vanishing():
    with pytest.raises(ValueError, match="malformed marker"):
        load_hooks().render("text\n<!-- generated: Quality_10k -->\n")


def test_the_quality_tables_hold_every_run_of_the_results_file():
    hooks = load_hooks()
    page = hooks.render((ROOT / "docs" / "benchmarks.md").read_text())
    results = hooks.load_quality().read_results(hooks.QUALITY_RESULTS)
    assert results
    for result in results:
        if result["lever"] is not None:  # the Hugging Face reference has no lever and no spread row
            assert f"| {result['set']} | {result['lever']} | {result['machine']} |" in page, result["run"]
    assert "| lever | against | seeds |" in page and "| verdict |" in page


def test_the_readme_is_short_and_links_only_pages_that_exist():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    for target in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / target).is_file(), target


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(folder)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return folder


@pytest.mark.slow
def test_the_site_works_offline_in_a_browser(browser, site):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    for page in site.glob("*.html"):  # nothing fetched from elsewhere: no CDN scripts, styles or fonts
        html = page.read_text()
        assert not re.search(r"<(script|link)[^>]+(src|href)=\"(https?:)?//", html), page.name
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        wait = WebDriverWait(browser, 30)
        browser.get(f"http://127.0.0.1:{server.server_address[1]}/reference.html")
        wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "table")))
        assert "--max_seq_len" in browser.find_element(By.TAG_NAME, "body").text
        failed = browser.execute_script(
            "return performance.getEntriesByType('resource')"
            ".filter(e => !e.name.startsWith(location.origin)).map(e => e.name)"
        )
        assert failed == [], f"the page asked for {failed}"
        # The search runs in the page (its index is part of the site): no server needed for it.
        browser.find_element(By.CSS_SELECTOR, "label.md-search__icon, .md-search__input").click()
        box = wait.until(ready.element_to_be_clickable((By.CSS_SELECTOR, "input.md-search__input")))
        box.send_keys("max_seq_len")
        hit = wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, ".md-search-result__item")))
        assert hit.text
    finally:
        server.shutdown()
