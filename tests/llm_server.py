"""A real, scriptable OpenAI-compatible HTTP server for tests (standard library only).

Serves `POST /v1/chat/completions` (and `/chat/completions`) on 127.0.0.1 at a free port,
answering with JSON shaped like OpenAI's, so the real `openai` client can talk to it.

Usage::

    from llm_server import Reply, ScriptedLLMServer

    with ScriptedLLMServer() as server:
        server.enqueue(Reply.rate_limited(retry_after=1), Reply("hello"))
        client = openai.OpenAI(base_url=server.base_url, api_key="x")
        ...
        assert len(server.requests) == 2

Replies are taken from a FIFO queue (`enqueue`); when it is empty the `responder`
callable (request body dict -> `Reply` or str) answers; with neither, the server answers
HTTP 500 "script exhausted". Every request body is recorded in `server.requests` and its
HTTP headers (lower-cased names) in `server.request_headers`.

In a test module, `from llm_server import llm_server  # noqa: F401` gives a fixture that
yields a running server with an empty script.
"""

from __future__ import annotations

import collections
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

ERROR_TYPES = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "forbidden"),
    404: ("invalid_request_error", "not_found"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


@dataclass
class Reply:
    """One scripted answer.

    status 200 gives a chat.completion with `content`; any other status gives an OpenAI
    error body with `error_message`. `delay_s` waits before answering (to provoke client
    timeouts). Token counts left as None are estimated from the text (~4 chars/token);
    `usage=False` omits the usage block entirely. `headers` are added to the response.
    """

    content: str = ""
    status: int = 200
    delay_s: float = 0.0
    headers: dict = field(default_factory=dict)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error_message: str = ""
    usage: bool = True
    finish_reason: str = "stop"

    @classmethod
    def rate_limited(cls, retry_after: float | None = None) -> Reply:
        """HTTP 429, with a `Retry-After` header (seconds) if given."""
        headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
        return cls(status=429, headers=headers, error_message="Rate limit reached")

    @classmethod
    def server_error(cls, status: int = 500, message: str = "Internal server error") -> Reply:
        """HTTP 5xx with an OpenAI-style error body."""
        return cls(status=status, error_message=message)

    @classmethod
    def error(cls, status: int, message: str) -> Reply:
        """Any HTTP error status with an OpenAI-style error body."""
        return cls(status=status, error_message=message)

    @classmethod
    def slow(cls, seconds: float, content: str = "") -> Reply:
        """A normal reply sent only after `seconds`."""
        return cls(content=content, delay_s=seconds)


def _rough_tokens(text: str) -> int:
    return (len(text) + 3) // 4


def completion_body(request: dict, reply: Reply) -> dict:
    """The chat.completion JSON for a successful `reply` to `request`."""
    prompt = "".join(str(m.get("content") or "") for m in request.get("messages", []))
    body = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "scripted"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.content},
                "finish_reason": reply.finish_reason,
            }
        ],
    }
    if reply.usage:
        pt = reply.prompt_tokens if reply.prompt_tokens is not None else _rough_tokens(prompt)
        ct = reply.completion_tokens
        ct = ct if ct is not None else _rough_tokens(reply.content)
        body["usage"] = {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}
    return body


def error_body(status: int, message: str) -> dict:
    """An OpenAI-style error JSON body."""
    kind, code = ERROR_TYPES.get(status, ("server_error", "server_error"))
    return {"error": {"message": message or f"HTTP {status}", "type": kind, "code": code}}


class ScriptedLLMServer:
    """OpenAI-compatible server on 127.0.0.1:<free port>, run in a background thread.

    Use as a context manager (or call `start()` / `close()`). `base_url` ends in `/v1`.
    """

    PATHS = ("/v1/chat/completions", "/chat/completions")

    def __init__(self, responder: Callable[[dict], Reply | str] | None = None) -> None:
        self.responder = responder
        self.requests: list[dict] = []
        self.request_headers: list[dict[str, str]] = []  # lower-cased names, same order
        self._queue: collections.deque[Reply] = collections.deque()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def enqueue(self, *replies: Reply | str) -> None:
        """Append replies (a str means a 200 reply with that content) to the FIFO script."""
        with self._lock:
            self._queue.extend(Reply(r) if isinstance(r, str) else r for r in replies)

    def pending(self) -> int:
        """Number of scripted replies not yet served."""
        with self._lock:
            return len(self._queue)

    def _next_reply(self, request: dict, headers: dict[str, str]) -> Reply:
        with self._lock:
            self.requests.append(request)
            self.request_headers.append(headers)
            if self._queue:
                return self._queue.popleft()
        if self.responder is None:
            return Reply.server_error(message="script exhausted: no reply queued, no responder")
        reply = self.responder(request)
        return Reply(reply) if isinstance(reply, str) else reply

    def _wait(self, seconds: float) -> bool:
        """Wait up to `seconds`, waking at once on close; False if the server is closing."""
        return not self._closing.wait(seconds) if seconds > 0 else True

    def start(self) -> ScriptedLLMServer:
        """Bind a free port and serve in a daemon thread."""
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # keep test output quiet
                pass

            def _send(self, status: int, body: dict, headers: dict | None = None) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in (headers or {}).items():
                        self.send_header(key, str(value))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (e.g. timed out)

            def do_POST(self):
                if self.path.split("?")[0] not in server.PATHS:
                    self._send(404, error_body(404, f"no route for {self.path}"))
                    return
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    request = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError as exc:
                    self._send(400, error_body(400, f"invalid JSON: {exc}"))
                    return
                try:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    reply = server._next_reply(request, headers)
                except Exception as exc:  # a broken responder should show up in the test
                    reply = Reply.server_error(message=f"responder failed: {exc!r}")
                if not server._wait(reply.delay_s):
                    return  # shutting down: drop the connection
                if reply.status == 200:
                    self._send(200, completion_body(request, reply), reply.headers)
                else:
                    body = error_body(reply.status, reply.error_message)
                    self._send(reply.status, body, reply.headers)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving; slow replies in progress are abandoned at once."""
        self._closing.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedLLMServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()


@pytest.fixture
def llm_server():
    """A running `ScriptedLLMServer` with an empty script; closed after the test."""
    with ScriptedLLMServer() as server:
        yield server
