"""/docs: Swagger UI from files shipped with the package (no CDN), on this server's /openapi.json.
tests/test_docs_browser.py drives it in a real headless Chromium (make test-slow)."""

import re


def test_the_docs_page_and_its_files_come_from_this_server(client):
    page = client.get("/docs/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert '"url": "/openapi.json"' in html
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(source.startswith("/docs/") for source in sources), sources  # nothing from a CDN
    for source in sources:
        assert client.get(source).status_code == 200, source
    assert client.get("/docs").status_code in (301, 308), "the bare path leads to the page"
    assert client.get("/docs/../../etc/passwd").status_code == 404
