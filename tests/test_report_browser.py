"""The report in a real browser: Debian's Chromium, headless, driven over the DevTools protocol (websocket-client).

The page of a real tuning run's profile (fake backend) must load with no console error and no request but its
own file, show the profile's figures, sort its table when a column is clicked, keep hostile strings as text,
and give a screenshot (written into the test's tmp folder). ``scripts/install-chromium.sh`` (run by
``make test``) installs the browser; without one the test is skipped, except under CI, where it fails.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autotune.profile.schema import DeploymentProfile
from autotune.report import write_report
from autotune.report.page import COLUMNS
from autotune.testing.reports import HOSTILE, hostile_profile, tuned_profile

pytestmark = pytest.mark.slow

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
         "--disable-dev-shm-usage", "--remote-debugging-port=0")


def chromium() -> str | None:
    """``AUTOTUNE_CHROMIUM``, else Debian's ``chromium`` on PATH."""
    return os.environ.get("AUTOTUNE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """A headless Chromium of our own (fresh profile folder) and one DevTools websocket to it."""

    def __init__(self, binary: str, folder: Path) -> None:
        import websocket  # websocket-client, in the test extra

        self.folder = folder
        self.log = (folder / "chromium.log").open("wb")
        profile = folder / "profile"
        self.process = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                        stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        # Port 0: Chromium picks a free loopback port and writes it (and the browser's websocket path) here.
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (active.exists() and len(active.read_text().split()) == 2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"Chromium did not start: {(folder / 'chromium.log').read_text()[-2000:]}")
            time.sleep(0.1)
        port, path = active.read_text().split()
        self.socket = websocket.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=60, suppress_origin=True)
        self.events: list[dict[str, Any]] = []
        self.last_id = 0

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        """One DevTools command; events that arrive meanwhile are kept in ``events``."""
        self.last_id += 1
        message: dict[str, Any] = {"id": self.last_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.socket.send(json.dumps(message))
        while True:
            reply = json.loads(self.socket.recv())
            if reply.get("id") == self.last_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            self.events.append(reply)

    def wait_for(self, method: str, session: str) -> dict[str, Any]:
        """The first event ``method`` of ``session`` (already received or the next to come)."""
        while True:
            for event in self.events:
                if event.get("method") == method and event.get("sessionId") == session:
                    return event
            self.events.append(json.loads(self.socket.recv()))

    def open(self, page: Path) -> Tab:
        """A new tab with ``page`` loaded, every event of it recorded from before the load."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=session)
        self.send("Page.navigate", {"url": page.as_uri()}, session)
        self.wait_for("Page.loadEventFired", session)
        return Tab(self, session)

    def close(self) -> None:
        try:
            self.socket.close()
        except AttributeError:  # never connected
            pass
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


class Tab:
    """One loaded page: evaluate JavaScript, read what it logged and requested, take screenshots."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser, self.session = browser, session

    def evaluate(self, expression: str) -> Any:
        result = self.browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                        "awaitPromise": True}, self.session)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def _events(self, method: str) -> list[dict[str, Any]]:
        return [e["params"] for e in self.browser.events if e.get("method") == method
                and e.get("sessionId") == self.session]

    def problems(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions and browser log errors (a refused request among them)."""
        found = [f"console.{e['type']}: {e['args']}" for e in self._events("Runtime.consoleAPICalled")
                 if e["type"] in ("error", "warning", "assert")]
        found += [f"exception: {e['exceptionDetails']}" for e in self._events("Runtime.exceptionThrown")]
        found += [f"log {e['entry']['level']}: {e['entry']['text']}" for e in self._events("Log.entryAdded")
                  if e["entry"]["level"] in ("error", "warning")]
        return found

    def requests(self) -> list[str]:
        return [e["request"]["url"] for e in self._events("Network.requestWillBeSent")]

    def screenshot(self, path: Path, width: int = 1400) -> Path:
        """A PNG of the whole page at ``width`` pixels."""
        def viewport(height: int) -> None:
            self.browser.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                                     "deviceScaleFactor": 1, "mobile": False},
                              self.session)

        viewport(900)  # lay the page out at this width first: its height depends on it
        viewport(min(int(self.evaluate("document.documentElement.scrollHeight")), 16000))
        shot = self.browser.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                                 self.session)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    binary = chromium()
    if binary is None:
        message = "no Chromium: scripts/install-chromium.sh installs Debian's (make test runs it), or set AUTOTUNE_CHROMIUM"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    started = Browser(binary, tmp_path_factory.mktemp("chromium"))
    yield started
    started.close()


@pytest.fixture(scope="module")
def profile(tmp_path_factory: pytest.TempPathFactory) -> DeploymentProfile:
    """What a real tuning run (fake backend, quality scored, confirmed) wrote, in a cache of its own."""
    folder = tmp_path_factory.mktemp("tuned")
    model = folder / "tiny.gguf"
    model.write_bytes(b"GGUF" + bytes(64))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUTOTUNE_CACHE", str(folder / "cache"))
        patch.delenv("AUTOTUNE_HARDWARE_JSON", raising=False)
        return tuned_profile(model)


# Each trial row's figures as the browser renders them: the exact value the sorting uses, and the text shown.
ROWS = """JSON.stringify(Array.from(document.querySelectorAll('table.trials tbody tr')).map(function (tr) {
  return {trial: tr.dataset.trial, classes: tr.className, cells: Array.from(tr.cells).map(function (td) {
    return {sort: td.getAttribute('data-sort'), text: td.innerText.trim()}; })}; }))"""


def rows(tab: Tab) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(tab.evaluate(ROWS))
    return found


def test_report_loads_cleanly_and_shows_the_profile(browser: Browser, profile: DeploymentProfile,
                                                    tmp_path: Path) -> None:
    page = write_report(profile, tmp_path / "report.html")
    tab = browser.open(page)
    assert tab.evaluate("document.readyState") == "complete"
    assert tab.problems() == []
    assert tab.requests() == [page.as_uri()]  # the page itself and nothing else

    shown = {row["trial"]: row for row in rows(tab)}
    assert sorted(shown, key=int) == [str(t.number) for t in profile.trials]
    decode, p95, kl = COLUMNS.index("decode tok/s"), COLUMNS.index("p95 ms"), COLUMNS.index("quality loss (KL) [interval]")
    for trial in profile.trials:
        cells = shown[str(trial.number)]["cells"]
        if trial.measured is None:
            assert cells[decode]["sort"] is None and cells[decode]["text"] == "—"
            continue
        assert float(cells[decode]["sort"]) == trial.measured.decode_tps
        assert abs(float(cells[decode]["text"]) - trial.measured.decode_tps) <= 0.05 + 1e-9
        assert float(cells[p95]["sort"]) == trial.measured.worst_itl_p95_ms
        assert abs(float(cells[p95]["text"]) - trial.measured.worst_itl_p95_ms) <= 0.005 + 1e-9
        if trial.quality and trial.quality.kl_divergence:
            assert float(cells[kl]["sort"]) == trial.quality.kl_divergence.value
    chosen = [t for t in shown.values() if "chosen" in t["classes"].split()]
    assert len(chosen) == 1 and tab.evaluate("document.querySelectorAll('svg.front g.point.chosen[data-trial]').length") == 1

    confirmation = profile.confirmation
    assert confirmation is not None and confirmation.speedup_over_untuned is not None
    headline = json.loads(tab.evaluate("""JSON.stringify(['decode-tps', 'p95-ms', 'speedup-untuned'].map(function (id) {
        var e = document.getElementById(id); return [Number(e.dataset.value), e.innerText]; }))"""))
    for (value, text), found, spec in zip(headline, (confirmation.decode_tps, confirmation.itl_p95_ms,
                                                     confirmation.speedup_over_untuned), (".1f", ".2f", ".2f"),
                                          strict=True):
        assert value == found.value and text == f"{found.value:{spec}} [{found.low:{spec}}, {found.high:{spec}}]"

    shot = tab.screenshot(tmp_path / "report.png")
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width == 1400 and height > 1500
    print(f"screenshot: {shot}")


def test_clicking_a_column_sorts_the_table(browser: Browser, profile: DeploymentProfile, tmp_path: Path) -> None:
    tab = browser.open(write_report(profile, tmp_path / "report.html"))
    column = COLUMNS.index("decode tok/s")

    def values() -> list[float | None]:
        return [float(row["cells"][column]["sort"]) if row["cells"][column]["sort"] is not None else None
                for row in rows(tab)]

    click = f"document.querySelectorAll('table.trials thead th')[{column}].click()"
    tab.evaluate(click)
    ascending = values()
    numbers = [v for v in ascending if v is not None]
    assert numbers == sorted(numbers) and ascending == numbers + [None] * (len(ascending) - len(numbers))
    tab.evaluate(click)
    descending = values()
    assert [v for v in descending if v is not None] == sorted(numbers, reverse=True) and descending[-1] is None
    assert tab.problems() == []


def test_hostile_strings_are_shown_as_text(browser: Browser, profile: DeploymentProfile, tmp_path: Path) -> None:
    tab = browser.open(write_report(hostile_profile(profile), tmp_path / "hostile.html"))
    assert tab.evaluate("typeof window.__pwned") == "undefined"
    assert tab.evaluate("document.querySelectorAll('img, iframe, object, embed').length") == 0
    assert tab.evaluate("document.scripts.length") == 1
    assert HOSTILE in tab.evaluate("document.querySelector('h1').textContent")
    assert tab.evaluate("document.body.innerText").count(HOSTILE) >= 5
    assert tab.problems() == [] and len(tab.requests()) == 1
