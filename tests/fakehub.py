"""A tiny fake Hugging Face Hub on 127.0.0.1 for tests (reached through ``HF_ENDPOINT``).

It serves ``HEAD``/``GET {endpoint}/{repo_id}/resolve/{revision}/{filename}`` with the headers
``hf_hub_download`` reads (``X-Repo-Commit``, ``ETag`` = sha256 for LFS-like files,
``Content-Length``), and can misbehave per file: ``404``, ``500``, ``timeout`` (sleeps past the
client's timeout), ``truncate`` (short body), ``truncate_once``, ``corrupt`` (flipped bytes under
the true ETag) and ``wrong`` (other bytes with their own ETag).
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

_PATH = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")


class FakeHub:
    def __init__(self) -> None:
        # (repo_id, commit) -> {filename: bytes}; refs map branch/tag -> commit
        self.files: dict[tuple[str, str], dict[str, bytes]] = {}
        self.refs: dict[tuple[str, str], str] = {}
        self.modes: dict[str, str] = {}  # filename -> misbehaviour
        self.requests: list[tuple[str, str]] = []
        self.sleep = 3.0
        self._served: dict[str, int] = {}
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                hub._handle(self, head=True)

            def do_GET(self) -> None:
                hub._handle(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(self, repo_id: str, revision: str, files: dict[str, bytes]) -> str:
        """Publish files under a revision name; returns the commit hash."""
        commit = hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()
        self.files[(repo_id, commit)] = dict(files)
        self.refs[(repo_id, revision)] = commit
        return commit

    def add_folder(self, repo_id: str, revision: str, folder: Path) -> str:
        return self.add(repo_id, revision, {p.name: p.read_bytes() for p in Path(folder).iterdir()})

    def _handle(self, req: BaseHTTPRequestHandler, head: bool) -> None:
        self.requests.append(("HEAD" if head else "GET", req.path))
        m = _PATH.match(req.path)
        if not m:
            return self._send(req, 404, b"", {"X-Error-Code": "RepoNotFound"}, head)
        repo, rev, name = m["repo"], unquote(m["rev"]), unquote(m["file"])
        commit = rev if (repo, rev) in self.files else self.refs.get((repo, rev))
        if commit is None:
            return self._send(req, 404, b"", {"X-Error-Code": "RevisionNotFound"}, head)
        data = self.files[(repo, commit)].get(name)
        mode = self.modes.get(name)
        if data is None or mode == "404":
            headers = {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit}
            return self._send(req, 404, b"", headers, head)
        if mode == "500":
            return self._send(req, 500, b"internal error", {}, head)
        if mode == "timeout":
            time.sleep(self.sleep)
        etag = hashlib.sha256(data).hexdigest()
        if mode == "wrong":
            data = data[::-1]
            etag = hashlib.sha256(data).hexdigest()
        headers = {"X-Repo-Commit": commit, "ETag": f'"{etag}"', "Accept-Ranges": "none"}
        body = data
        if not head:
            served = self._served.get(name, 0)
            self._served[name] = served + 1
            if mode == "corrupt":
                body = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
            elif mode == "truncate" or (mode == "truncate_once" and served == 0):
                body = data[: len(data) // 2]
        headers["Content-Length"] = str(len(data) if head else len(body))
        return self._send(req, 200, body, headers, head)

    @staticmethod
    def _send(req, status: int, body: bytes, headers: dict[str, str], head: bool) -> None:
        try:
            req.send_response(status)
            for k, v in headers.items():
                req.send_header(k, v)
            if "Content-Length" not in headers:
                req.send_header("Content-Length", str(len(body)))
            req.end_headers()
            if not head:
                req.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass
