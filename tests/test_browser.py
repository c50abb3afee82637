"""The summary pages open in headless Chromium with networking off: every chart draws its marks and the
console stays free of errors. Chromium is driven through the DevTools protocol over a pipe
(``--remote-debugging-pipe``: NUL-separated JSON on file descriptors 3 and 4), so no extra package is needed."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from argparse import Namespace
from pathlib import Path

import pytest
from conftest import require
from test_summary import make_study, summarize_args

from workflow_src.cli import run_compare_cli, run_summarize_cli
from workflow_src.report.pages import SUMMARY_CHARTS

pytestmark = pytest.mark.browser

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
OFFLINE_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--no-first-run",
    "--no-default-browser-check",
    "--mute-audio",
    "--hide-scrollbars",
    # any network attempt fails: no proxy listens on the discard port, and every host name is unknown
    "--proxy-server=127.0.0.1:9",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--remote-debugging-pipe",
    "--window-size=1300,900",
]
# Vega's SVG renderer puts each mark set in <g class="mark-... role-mark">; axes and legends use other roles.
CHART_REPORT_JS = """
Array.from(document.querySelectorAll("div.chart")).map(function (div) {
  return {id: div.id, svgs: div.querySelectorAll("svg").length,
          marks: div.querySelectorAll("svg g.role-mark > *").length,
          canvases: div.querySelectorAll("canvas").length,
          error: div.querySelector(".chart-error") ? div.textContent : null};
})
"""


def chromium_path() -> str | None:
    found = (shutil.which(name) for name in CHROMIUM_NAMES)
    return next((p for p in found if p), None)


def _high_fd(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return high


class DevTools:
    """A minimal DevTools-protocol client over Chromium's debugging pipe."""

    def __init__(self, exe: str, profile_dir: Path, timeout: float = 60.0):
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # the child's ends move above fd 9 first, so that the shell's redirections cannot clobber them
        to_browser_r, from_browser_w = (_high_fd(to_browser_r), _high_fd(from_browser_w))
        # bash moves the pipe ends to fds 3 (commands in) and 4 (replies out) before exec'ing Chromium
        script = f'exec "$0" "$@" 3<&{to_browser_r} 4>&{from_browser_w} {to_browser_r}<&- {from_browser_w}>&-'
        self.proc = subprocess.Popen(
            ["bash", "-c", script, exe, *OFFLINE_FLAGS, f"--user-data-dir={profile_dir}", "about:blank"],
            pass_fds=(to_browser_r, from_browser_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self.timeout = timeout
        self.events: list[dict] = []
        self._buffer = b""
        self._next_id = 0

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no reply from Chromium")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"Chromium exited: {self.proc.stderr.read().decode(errors='replace')[-2000:]}")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def drain(self, seconds: float) -> None:
        """Collect the events that arrive within ``seconds``."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events.append(self._read_message(deadline))
        except TimeoutError:
            pass

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


def console_errors(events: list[dict]) -> list[str]:
    """Console errors, uncaught exceptions and browser log errors (e.g. failed loads) among the events."""
    out = []
    for ev in events:
        method, params = ev.get("method"), ev.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            out.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            out.append(params["entry"].get("text", ""))
    return out


def open_page(page: Path, screenshot: Path, profile_dir: Path, width: int = 1300, wait_s: float = 90.0) -> dict:
    """Load ``page`` offline, wait for its charts, and return what rendered, the errors and the requests."""
    exe = chromium_path()
    browser = DevTools(exe, profile_dir)
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            browser.send(f"{domain}.enable", session=session)
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        browser.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
        deadline, state = time.monotonic() + wait_s, {}
        while time.monotonic() < deadline:
            state = evaluate(
                browser,
                session,
                "({rendered: document.body && document.body.dataset.chartsRendered, "
                "total: document.body && document.body.dataset.chartsTotal})",
            )
            if state.get("total") is not None:
                break
            browser.drain(0.25)
        charts = evaluate(browser, session, CHART_REPORT_JS)
        height = browser.send("Page.getLayoutMetrics", session=session)["cssContentSize"]["height"]
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": int(height), "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        browser.drain(0.5)
        shot = browser.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=session)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        browser.drain(0.5)
    finally:
        browser.close()
    requests = [
        ev["params"]["request"]["url"] for ev in browser.events if ev.get("method") == "Network.requestWillBeSent"
    ]
    return {"state": state, "charts": charts, "errors": console_errors(browser.events), "requests": requests}


def evaluate(browser: DevTools, session: str, expression: str):
    result = browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)
    if "exceptionDetails" in result:
        raise AssertionError(f"page script failed: {result['exceptionDetails']}")
    return result["result"].get("value")


def assert_rendered(report: dict, expected_charts: int) -> None:
    assert report["state"].get("total") == str(expected_charts), report["state"]
    assert report["state"].get("rendered") == str(expected_charts), report
    assert len(report["charts"]) == expected_charts
    for chart in report["charts"]:
        assert chart["error"] is None, chart
        assert chart["svgs"] + chart["canvases"] >= 1, chart
        assert chart["marks"] > 0, chart
    assert report["errors"] == [], report["errors"]
    remote = [u for u in report["requests"] if not u.startswith(("file:", "data:", "blob:", "about:"))]
    assert remote == [], remote


@pytest.fixture
def chromium():
    require(chromium_path() is not None, "chromium")
    return chromium_path()


def test_synthetic_pages_render_offline(chromium, tmp_path):
    spec = make_study(tmp_path)
    args = summarize_args(tmp_path, spec)
    assert run_summarize_cli(args) == 0
    shot = tmp_path / "summary_screenshot.png"
    report = open_page(Path(args.out_html), shot, tmp_path / "profile")
    assert_rendered(report, expected_charts=len(SUMMARY_CHARTS))
    assert shot.stat().st_size > 50_000
    compare = tmp_path / "compare.html"
    assert run_compare_cli(Namespace(summaries=[args.out_table], out=str(compare))) == 0
    assert_rendered(open_page(compare, tmp_path / "compare.png", tmp_path / "profile2"), expected_charts=2)


def test_broken_chart_is_reported(chromium, tmp_path):
    """The checks above would notice a chart that fails: a spec error shows up as a console error."""
    spec = make_study(tmp_path, seeds=(0,), suites={"heldout-L01": 1}, n_scms=2, episodes=1, steps=2)
    args = summarize_args(tmp_path, spec)
    run_summarize_cli(args)
    page = Path(args.out_html)
    text = page.read_text()
    start = text.index('<script type="application/json" id="spec-step_curves">') + len(
        '<script type="application/json" id="spec-step_curves">'
    )
    end = text.index("</script>", start)
    page.write_text(text[:start] + '{"mark": 42}' + text[end:])
    report = open_page(page, tmp_path / "broken.png", tmp_path / "profile")
    total = len(SUMMARY_CHARTS)
    assert report["state"]["rendered"] == str(total - 1) and report["state"]["total"] == str(total)
    assert any("step_curves" in e for e in report["errors"]), report["errors"]


@pytest.mark.slow
def test_study_summary_renders_offline(chromium, tiny_study, tmp_path):
    page = tiny_study / "results" / "tiny_a" / "summary.html"
    shot = tmp_path / "summary_screenshot.png"
    report = open_page(page, shot, tmp_path / "profile")
    assert_rendered(report, expected_charts=len(SUMMARY_CHARTS))
