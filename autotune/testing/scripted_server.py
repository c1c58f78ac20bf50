"""A scripted OpenAI-compatible server program of known timing, and an exporter that deploys it: ``autotune
verify`` and the speculation check tested without a model.

``python -m autotune.testing.scripted_server --port N`` answers ``/health`` and ``/v1/completions`` /
``/v1/chat/completions``: streamed, ``--chunks`` text chunks, the first after ``--first-ms``, then one every
``--gap-ms``, each request in its own thread; not streamed (the speculation check's greedy requests), a text
that depends only on the prompt — unless ``--spec-type`` is given with ``--diverge``, when it differs, as a
speculative decoder that changed greedy output would. With ``--spec-type`` it reports drafted and accepted
tokens in ``timings`` as llama-server does. ``--pid-file`` names a file it writes its process id to.

``ScriptedExporter`` contributes the exporter ``scripted`` for profiles of the fake backend, whose ``command``
starts this program; ``scripted_profile`` is such a profile, served to ``clients`` clients.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from autotune.hookspecs import hookimpl
from autotune.plugins.exporter import Exporter
from autotune.profile.schema import Confirmation, DeploymentProfile, Interval


def _settings() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="a scripted OpenAI-compatible server of known timing")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--first-ms", type=float, default=150.0)
    parser.add_argument("--gap-ms", type=float, default=40.0)
    parser.add_argument("--chunks", type=int, default=5)
    parser.add_argument("--spec-type", default="none")
    parser.add_argument("--diverge", action="store_true")
    parser.add_argument("--pid-file")
    return parser.parse_args()


def greedy_text(prompt: str) -> str:
    """What the scripted server answers greedily: a text that depends only on the prompt."""
    return "answer " + hashlib.sha256(prompt.encode()).hexdigest()[:16]


def _handler(settings: argparse.Namespace) -> type[BaseHTTPRequestHandler]:
    speculative = settings.spec_type != "none"

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - the http.server name
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(b'{"status": "ok"}')

        def do_POST(self) -> None:  # noqa: N802 - the http.server name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            chat = self.path.endswith("/chat/completions")
            timings = {"draft_n": 12, "draft_n_accepted": 9} if speculative else {}
            if not body.get("stream"):
                prompt = body.get("prompt") or json.dumps(body.get("messages"))
                text = greedy_text(prompt) + (" but speculated" if speculative and settings.diverge else "")
                choice: dict[str, Any] = {"message": {"content": text}} if chat else {"text": text}
                self._send_json({"choices": [choice], "timings": timings})
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            time.sleep(settings.first_ms / 1000)
            try:
                for index in range(settings.chunks):
                    if index:
                        time.sleep(settings.gap_ms / 1000)
                    choice = {"delta": {"content": "tok"}} if chat else {"text": "tok"}
                    self.wfile.write(b"data: " + json.dumps({"choices": [choice]}).encode() + b"\n\n")
                    self.wfile.flush()
                final = {"choices": [], "usage": {"completion_tokens": settings.chunks, "prompt_tokens": 7},
                         "timings": timings}
                self.wfile.write(b"data: " + json.dumps(final).encode() + b"\n\ndata: [DONE]\n\n")
            except (BrokenPipeError, ConnectionResetError):
                pass

        def _send_json(self, value: dict[str, Any]) -> None:
            data = json.dumps(value).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def main() -> int:
    """Serve until killed."""
    settings = _settings()
    if settings.pid_file:
        with open(settings.pid_file, "w") as sink:
            sink.write(str(os.getpid()))
    server = ThreadingHTTPServer((settings.host, settings.port), _handler(settings))
    server.daemon_threads = True
    server.serve_forever()
    return 0


SCRIPT_FLAGS = "scripted_flags"
"""Where a scripted profile keeps the program's timing flags (``params``, which the fake backend does not check)."""


def command(profile: DeploymentProfile, port: int) -> list[str] | None:
    """The scripted server serving ``profile`` (a fake-backend profile) on 127.0.0.1:``port``."""
    if profile.backend.name != "fake":
        return None
    flags = [str(flag) for flag in profile.params.get(SCRIPT_FLAGS, [])]
    return [sys.executable, "-m", "autotune.testing.scripted_server", "--port", str(port), *flags]


class ScriptedExporter:
    """A plugin contributing the ``scripted`` exporter (its ``command`` starts the scripted server)."""

    @hookimpl
    def autotune_exporters(self) -> Iterator[Exporter]:
        """The exporter whose command ``autotune verify`` starts for a fake-backend profile."""
        yield Exporter(name="scripted", description="the scripted server (tests)", backends=("fake",),
                       render=lambda profile: " ".join(command(profile, 8080) or []), command=command)


def scripted_profile(clients: int, flags: list[str], tps: Interval, itl_ms: Interval, ttft_ms: float,
                     peak_bytes: int) -> DeploymentProfile:
    """A fake-backend profile served to ``clients`` clients by the scripted server started with ``flags``,
    claiming ``tps`` and ``itl_ms`` as confirmed, ``ttft_ms`` and ``peak_bytes`` from its search trial."""
    from autotune.testing.profiles import sample_profile

    base = sample_profile("llamacpp")
    measured = base.measured.model_copy(update={"decode_tps": tps.value, "itl_p95_ms": itl_ms.value,
                                                "ttft_ms": ttft_ms, "peak_rss_bytes": peak_bytes})
    return base.model_copy(update={
        "backend": base.backend.model_copy(update={"name": "fake"}),
        "params": {SCRIPT_FLAGS: flags},
        "workload": base.workload.model_copy(update={"concurrency": clients}),
        "measured": measured,
        "confirmation": Confirmation(rounds=5, decode_tps=tps, itl_p95_ms=itl_ms, verdict="single finalist"),
    })


if __name__ == "__main__":
    sys.exit(main())
