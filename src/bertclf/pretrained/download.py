"""Download a file over HTTP(S) with a progress bar, resuming a partial download, written atomically."""

import os
from pathlib import Path

import requests
from tqdm import tqdm

from bertclf.errors import DownloadError


def download(url: str, dest, timeout=30, chunk=1 << 20, manual=None) -> Path:
    """Fetch `url` into `dest` (a no-op when `dest` exists).

    The bytes go to `<dest>.part` first, so an interrupted download resumes where it stopped
    (HTTP Range) and `dest` only ever appears complete.

    Args:
        url: http(s) address.
        dest: final file path.
        timeout: seconds to wait for the server to connect or send.
        manual: how to get the file without us, for the error message (default: save it as dest).
    """
    dest = Path(dest)
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    done = part.stat().st_size if part.is_file() else 0
    headers = {"Range": f"bytes={done}-"} if done else {}
    manual = manual or f"Download it by other means and save it as {dest}."
    try:
        with requests.get(url, headers=headers, stream=True, timeout=timeout) as response:
            if response.status_code == 416:  # the part file is already whole
                os.replace(part, dest)
                return dest
            if response.status_code not in (200, 206):
                raise DownloadError(f"{url} answered HTTP {response.status_code}. {manual}")
            if response.status_code == 200:
                done = 0  # the server ignored the range: start over
            total = int(response.headers.get("Content-Length", 0)) + done or None
            with (
                open(part, "ab" if done else "wb") as out,
                tqdm(total=total, initial=done, unit="B", unit_scale=True, desc=dest.name) as bar,
            ):
                for block in response.iter_content(chunk):
                    out.write(block)
                    bar.update(len(block))
    except requests.RequestException as err:
        raise DownloadError(
            f"could not download {url} ({type(err).__name__}); is this machine offline? {manual}"
        ) from None
    if total and part.stat().st_size != total:
        raise DownloadError(f"{url}: got {part.stat().st_size} of {total} bytes; run again to resume.")
    os.replace(part, dest)
    return dest
