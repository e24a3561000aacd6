"""A local HTTP server for the downloader's tests (``tests/datasets/test_download.py`` and the
full-disk case of ``tests/cli/test_faults.py``): serves archives built from the real shared files, with
HTTP Range support, so transfers, resumes and checksums run for real without the internet."""
from __future__ import annotations

import io
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from conftest import OXFORD, require_shared


class Served:
    """What the local server holds: path → bytes, paths to cut in half once, requests seen."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_once: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []


def _handler(state: Served):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.lstrip("/")
            rng = self.headers.get("Range")
            state.requests.append((path, rng))
            if path not in state.files:
                self.send_error(404)
                return
            data, start = state.files[path], 0
            if rng:
                start = int(rng.removeprefix("bytes=").split("-")[0])
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if path in state.cut_once:                  # the connection drops half-way
                state.cut_once.discard(path)
                self.wfile.write(body[: len(body) // 2])
                self.close_connection = True
                return
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    return Handler


def tgz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def serve_oxford(state: Served) -> None:
    require_shared()
    state.files["oxbuild_images-v1.tgz"] = tgz({p.name: p.read_bytes() for p in sorted((OXFORD / "jpg").glob("*.jpg"))})
    state.files["gt_files_170407.tgz"] = (OXFORD / "gt_files_170407.tgz").read_bytes()


@contextmanager
def local_server() -> Iterator[tuple[Served, str]]:
    """A server on 127.0.0.1 (a free port) in a thread: yields what it serves and its base URL."""
    state = Served()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
