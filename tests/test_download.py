"""Downloads: progress, resume after a cut, atomic result, a clear message offline."""

import http.server
import threading

import pytest

from bertclf.pretrained.download import DownloadError, download

BODY = bytes(range(256)) * 400  # 100 KiB


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves BODY at /file.csv, honouring `Range: bytes=N-`; 404 elsewhere."""

    def do_GET(self):
        if self.path != "/file.csv":
            self.send_error(404)
            return
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(BODY) - start))
        self.end_headers()
        self.wfile.write(BODY[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_download_whole_file(server, tmp_path):
    path = download(f"{server}/file.csv", tmp_path / "d" / "file.csv")
    assert path.read_bytes() == BODY and not (tmp_path / "d" / "file.csv.part").exists()


def test_resumes_a_partial_download(server, tmp_path):
    (tmp_path / "file.csv.part").write_bytes(BODY[:1000])
    assert download(f"{server}/file.csv", tmp_path / "file.csv").read_bytes() == BODY


def test_http_error_names_url_and_manual_route(server, tmp_path):
    with pytest.raises(DownloadError, match=r"/missing answered HTTP 404.*save it as"):
        download(f"{server}/missing", tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()


def test_offline_is_a_clear_error(tmp_path):
    with pytest.raises(DownloadError, match=r"could not download http://127.0.0.1:9/x.csv .*offline.*save it as"):
        download("http://127.0.0.1:9/x.csv", tmp_path / "x.csv", timeout=2)
