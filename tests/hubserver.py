"""A loopback stand-in of the Hugging Face Hub's HTTP API, for tests of real huggingface_hub downloads.

It answers what `hf_hub_download` and `HfApi.model_info` ask for, the way huggingface.co does:

- `HEAD|GET /{org}/{name}/resolve/{revision}/{path}`: small ("git") files answer 200 with `ETag`,
  `Content-Length` and `X-Repo-Commit`; large ("LFS") files answer 302 to a CDN on another origin, with
  `X-Linked-Etag` (the sha256), `X-Linked-Size` and `X-Repo-Commit`, as the Hub does. No `X-Xet-*`
  header is ever sent, so the client takes its plain HTTP path.
- `GET /api/models/{org}/{name}[/revision/{revision}]`: the model's `sha` and `siblings`.
- Errors carry the Hub's `X-Error-Code` header (`RepoNotFound` with 401/404, `GatedRepo` with 401/403,
  `RevisionNotFound` and `EntryNotFound` with 404), which is how the client picks its exception class;
  a token starting with `hf_invalid` gets the Hub's plain 401 "Invalid credentials".

The CDN is a second server on another port, so the client sees a different origin and, as with the
real Hub, does not follow the redirect during its HEAD call. Every request is logged in `requests`.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
INVALID_TOKEN_PREFIX = "hf_invalid"  # tokens the stand-in treats as revoked or mistyped


@dataclass
class StandInRepo:
    """One model repository: commits (sha -> {path: bytes}), branch refs, and its access rules."""

    repo_id: str
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    gated: bool = False
    allowed_tokens: tuple[str, ...] = ()


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    authorization: str | None


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubStandIn:
    """Start with `with HubStandIn() as hub:`; `hub.endpoint` is the value for HF_ENDPOINT."""

    def __init__(self) -> None:
        self.repos: dict[str, StandInRepo] = {}
        self.requests: list[LoggedRequest] = []
        self._blobs: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._hub = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self._handle_hub))
        self._cdn = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self._handle_cdn))
        self._threads: list[threading.Thread] = []

    # ----------------------------------------------------------------------------- set-up

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._hub.server_address[1]}"

    @property
    def cdn(self) -> str:
        return f"http://127.0.0.1:{self._cdn.server_address[1]}"

    def add_commit(self, repo_id: str, files: dict[str, bytes], *, branch: str = "main") -> str:
        """Add a commit holding exactly `files` and move `branch` to it; returns its 40-hex sha."""
        repo = self.repos.setdefault(repo_id, StandInRepo(repo_id))
        digest = hashlib.sha1(repo_id.encode() + str(len(repo.commits)).encode())
        for path in sorted(files):
            digest.update(path.encode() + hashlib.sha256(files[path]).digest())
        sha = digest.hexdigest()
        repo.commits[sha] = dict(files)
        repo.refs[branch] = sha
        for data in files.values():
            self._blobs[hashlib.sha256(data).hexdigest()] = data
        return sha

    def set_gated(self, repo_id: str, allowed_tokens: tuple[str, ...] = ()) -> None:
        """Gate the repo: only requests with `Authorization: Bearer <one of allowed_tokens>` get files."""
        repo = self.repos[repo_id]
        repo.gated = True
        repo.allowed_tokens = allowed_tokens

    def count(self, method: str, path_part: str) -> int:
        """How many logged requests used `method` on a path containing `path_part`."""
        with self._lock:
            return sum(1 for r in self.requests if r.method == method and path_part in r.path)

    # ------------------------------------------------------------------------- lifecycle

    def start(self) -> HubStandIn:
        for server in (self._hub, self._cdn):
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop both servers and close their sockets; calling it again does nothing."""
        if not self._threads:
            return
        for server in (self._hub, self._cdn):
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()

    def __enter__(self) -> HubStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -------------------------------------------------------------------------- routing

    def _log(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.requests.append(LoggedRequest(handler.command, handler.path, handler.headers.get("Authorization")))

    def _handle_cdn(self, handler: BaseHTTPRequestHandler) -> None:
        self._log(handler)
        parts = urlsplit(handler.path).path.strip("/").split("/")
        data = self._blobs.get(parts[-1]) if len(parts) == 2 and parts[0] == "blobs" else None
        if data is None:
            _send(handler, 404, b"no such blob")
            return
        _send(handler, 200, data, {"Content-Type": "application/octet-stream", "ETag": f'"{parts[-1]}"'})

    def _handle_hub(self, handler: BaseHTTPRequestHandler) -> None:
        self._log(handler)
        parts = [unquote(p) for p in urlsplit(handler.path).path.strip("/").split("/")]
        if len(parts) >= 3 and parts[0] == "api" and parts[1] == "models":
            self._model_info(handler, parts[2:])
        elif len(parts) >= 5 and parts[2] == "resolve":
            self._resolve(handler, f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
        else:
            _send(handler, 404, b"not found")

    def _repo_or_error(self, handler: BaseHTTPRequestHandler, repo_id: str) -> StandInRepo | None:
        if (handler.headers.get("Authorization") or "").startswith(f"Bearer {INVALID_TOKEN_PREFIX}"):
            _send(handler, 401, b'{"error": "Invalid credentials in Authorization header"}', {"X-Error-Message": "Invalid credentials in Authorization header"})
            return None
        repo = self.repos.get(repo_id)
        if repo is None:  # the Hub answers 401 to anonymous requests, 404 to authenticated ones
            status = 404 if handler.headers.get("Authorization") else 401
            _error(handler, status, "RepoNotFound", "Repository not found")
            return None
        if repo.gated:
            auth = handler.headers.get("Authorization") or ""
            token = auth.removeprefix("Bearer ").strip()
            if not token:
                _error(
                    handler,
                    401,
                    "GatedRepo",
                    f"Access to model {repo_id} is restricted. You must have access to it and be authenticated to access it. Please log in.",
                )
                return None
            if token not in repo.allowed_tokens:
                _error(
                    handler,
                    403,
                    "GatedRepo",
                    f"Access to model {repo_id} is restricted and you are not in the authorized list. Visit https://huggingface.co/{repo_id} to ask for access.",
                )
                return None
        return repo

    def _commit(self, repo: StandInRepo, revision: str) -> str | None:
        if revision in repo.commits:
            return revision
        return repo.refs.get(revision)

    def _resolve(self, handler: BaseHTTPRequestHandler, repo_id: str, revision: str, path: str) -> None:
        repo = self._repo_or_error(handler, repo_id)
        if repo is None:
            return
        sha = self._commit(repo, revision)
        if sha is None:
            _error(handler, 404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return
        files = repo.commits[sha]
        if path not in files:
            _error(handler, 404, "EntryNotFound", f'{path} does not exist on "{revision}"', {"X-Repo-Commit": sha})
            return
        data = files[path]
        if path.endswith(LFS_SUFFIXES):
            digest = hashlib.sha256(data).hexdigest()
            _send(
                handler,
                302,
                b"",
                {
                    "Location": f"{self.cdn}/blobs/{digest}",
                    "X-Repo-Commit": sha,
                    "X-Linked-Etag": f'"{digest}"',
                    "X-Linked-Size": str(len(data)),
                    "ETag": f'W/"{_git_blob_sha1(digest.encode())}"',
                },
            )
            return
        _send(
            handler,
            200,
            data,
            {
                "X-Repo-Commit": sha,
                "ETag": f'"{_git_blob_sha1(data)}"',
                "Content-Type": "application/octet-stream",
            },
        )

    def _model_info(self, handler: BaseHTTPRequestHandler, parts: list[str]) -> None:
        if len(parts) < 2:
            _send(handler, 404, b"not found")
            return
        repo_id = f"{parts[0]}/{parts[1]}"
        revision = parts[3] if len(parts) >= 4 and parts[2] == "revision" else "main"
        repo = self._repo_or_error(handler, repo_id)
        if repo is None:
            return
        sha = self._commit(repo, revision)
        if sha is None:
            _error(handler, 404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return
        body = {
            "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24],
            "id": repo_id,
            "modelId": repo_id,
            "sha": sha,
            "private": False,
            "gated": "manual" if repo.gated else False,
            "disabled": False,
            "tags": [],
            "siblings": [{"rfilename": name} for name in sorted(repo.commits[sha])],
        }
        _send(handler, 200, json.dumps(body).encode(), {"Content-Type": "application/json"})


def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    handler.send_response(status)
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.send_header("Connection", "close")  # no keep-alive: a stopped stand-in is really unreachable
    handler.close_connection = True
    handler.end_headers()
    if handler.command != "HEAD" and body:
        handler.wfile.write(body)


def _error(handler: BaseHTTPRequestHandler, status: int, code: str, message: str, extra: dict[str, str] | None = None) -> None:
    headers = {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"}
    headers.update(extra or {})
    _send(handler, status, json.dumps({"error": message}).encode(), headers)


def _make_handler(route: Callable[[BaseHTTPRequestHandler], None]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server naming)
            route(self)

        def do_HEAD(self) -> None:  # noqa: N802
            route(self)

        def log_message(self, format: str, *args: object) -> None:  # quiet test output
            pass

    return Handler


def point_hub_client_at(monkeypatch, endpoint: str, hf_home: str) -> None:  # type: ignore[no-untyped-def]
    """Make this process's huggingface_hub talk to `endpoint` and cache under `hf_home`.

    huggingface_hub reads HF_ENDPOINT and HF_HOME once, at import, into `constants`; a new process
    would simply get the environment variables. In-process, the derived constants are patched too.
    No token from the developer's machine is sent: HF_TOKEN is removed and the token files moved.
    """
    from pathlib import Path

    from huggingface_hub import constants

    hub_cache = str(Path(hf_home) / "hub")
    for name, value in (("HF_ENDPOINT", endpoint), ("HF_HOME", hf_home), ("HF_HUB_CACHE", hub_cache)):
        monkeypatch.setenv(name, value)
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HOME", hf_home)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", hub_cache)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(Path(hf_home) / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(Path(hf_home) / "stored_tokens"))
