"""Real servers and card checks shared by the alert, health and preflight tests: an HTTP recorder, an SMTP
sink, luigi.cfg overrides, log capture, Adaptive Card validation."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import luigi
import pytest

from cbm_luigi.config.alerts import AlertSettings

# the SMTP sink's per-connection INFO lines ("EOF received", "connection lost") are not the test's output
logging.getLogger("mail.log").setLevel(logging.WARNING)

WORKFLOW_PATH = "/workflows/0a1b2c/triggers/manual/paths/invoke"
SECRET_QUERY = "api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=TopSecretSignature123"
LEGACY_PATH = "/webhookb2/1111@2222/IncomingWebhook/3333/4444"

# --- a real HTTP server recording what it is sent ------------------------------------------------------------------


@dataclass
class Post:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Recorder:
    """ThreadingHTTPServer on 127.0.0.1:<free port>; answers each path from a script, then 202 (or 200 "1")."""

    posts: list[Post] = field(default_factory=list)
    script: dict[str, list[tuple[int, dict[str, str], str]]] = field(default_factory=dict)
    server: ThreadingHTTPServer | None = None

    def start(self) -> Recorder:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self.path.split("?", 1)[0]
                recorder.posts.append(Post(path, {k.lower(): v for k, v in self.headers.items()}, body))
                queue = recorder.script.get(path) or []
                if queue:
                    status, headers, text = queue.pop(0)
                elif "IncomingWebhook" in path:
                    status, headers, text = 200, {}, "1"
                else:
                    status, headers, text = 202, {}, ""
                data = text.encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def base(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def workflow_url(self, path: str = WORKFLOW_PATH) -> str:
        return f"{self.base}{path}?{SECRET_QUERY}"

    def legacy_url(self) -> str:
        return f"{self.base}{LEGACY_PATH}"

    def respond(self, path: str, *answers: tuple[int, dict[str, str], str]) -> None:
        self.script.setdefault(path, []).extend(answers)

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    r = Recorder().start()
    yield r
    r.stop()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


@pytest.fixture
def luigi_cfg() -> Iterator[Callable[[str, str, str], None]]:
    """Set luigi.cfg options for one test (restored afterwards)."""
    cfg = luigi.configuration.get_config()
    undo: list[tuple[str, str | None, str | None]] = []

    def set_option(section: str, option: str, value: str) -> None:
        if not cfg.has_section(section):
            cfg.add_section(section)
            undo.append((section, None, None))
        old = cfg.get(section, option, raw=True) if cfg.has_option(section, option) else None
        undo.append((section, option, old))
        cfg.set(section, option, value)

    yield set_option
    for section, option, old in reversed(undo):
        if option is None:
            cfg.remove_section(section)
        elif old is None:
            cfg.remove_option(section, option)
        else:
            cfg.set(section, option, old)


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """Every log line of cbm_luigi (DEBUG and up) as formatted text."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Keep(logging.DEBUG)
    logger = logging.getLogger("cbm_luigi")
    old = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(old)


class Sleeps(list[float]):
    """Records the waits asked for, and really waits (briefly: tests cap the waits)."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        time.sleep(seconds)


def fast(**kw: Any) -> AlertSettings:
    base: dict[str, Any] = {"retry_backoff": 0.01, "max_retry_wait": 2.0, "http_timeout": 5.0}
    base.update(kw)
    return AlertSettings(**base)


# --- Adaptive Card validation ---------------------------------------------------------------------------------

_ELEMENTS = {"TextBlock", "FactSet", "Container", "ColumnSet", "Image"}
_COLORS = {"Default", "Dark", "Light", "Accent", "Good", "Warning", "Attention"}
_STYLES = {"default", "emphasis", "good", "attention", "warning", "accent"}


def assert_adaptive_card(card: dict[str, Any]) -> None:
    assert card["type"] == "AdaptiveCard"
    assert card["version"] in ("1.4", "1.5")
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert isinstance(card["body"], list) and card["body"]

    def element(e: dict[str, Any]) -> None:
        assert e["type"] in _ELEMENTS, e
        if e["type"] == "TextBlock":
            assert isinstance(e["text"], str) and e["text"]
            assert e.get("color", "Default") in _COLORS
        elif e["type"] == "FactSet":
            assert e["facts"]
            for f in e["facts"]:
                assert set(f) == {"title", "value"} and all(isinstance(v, str) for v in f.values())
        elif e["type"] == "Container":
            assert e.get("style", "default") in _STYLES
            for item in e["items"]:
                element(item)

    for e in card["body"]:
        element(e)
    for a in card.get("actions", []):
        assert a["type"] == "Action.OpenUrl" and a["url"].startswith("http") and a["title"]


def card_of(post: Post) -> dict[str, Any]:
    env = post.json
    assert env["type"] == "message"
    assert len(env["attachments"]) == 1
    att = env["attachments"][0]
    assert att["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert_adaptive_card(att["content"])
    return att["content"]  # type: ignore[no-any-return]


def facts_of(card: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for e in card["body"]:
        if e["type"] == "FactSet":
            out.update({f["title"]: f["value"] for f in e["facts"]})
    return out


def texts_of(card: dict[str, Any]) -> list[str]:
    out = []
    for e in card["body"]:
        if e["type"] == "TextBlock":
            out.append(e["text"])
        for item in e.get("items", []):
            if item["type"] == "TextBlock":
                out.append(item["text"])
    return out
