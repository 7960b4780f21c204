"""The operator's tools on the local cluster that `make serve` starts: Ray 2.60 turns token
authentication on for it, so `serve status` needs `RAY_AUTH_MODE=token` (the token is read
from ~/.ray/auth_token), and the dashboard needs that token, once, as a cookie. A real Ray
with its dashboard serves the application in a subprocess, started the way `serve run` starts
it (`ray.init()` on a new local cluster, no RAY_AUTH_MODE set); headless Chromium opens the
dashboard's Serve page with the token and must see the application's deployments.

Set HAPPYKUBE_DASHBOARD_SCREENSHOT=path to keep the screenshot (docs/dashboard-serve.png was
taken so)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO, TEST_API_KEY, free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DEPLOYMENTS = ("Ingress", "LanguageRouter", "it_emotion", "it_sentiment", "en_emotion")

# What `serve run serve_config.yaml` does, on free ports: a new local cluster (token auth on by
# default in Ray 2.60; "local", never a Ray someone else started on this machine), its
# dashboard, Serve, the application; then wait for stdin to close.
SERVER = """
import json, sys
import ray
from ray import serve
from serve_app.app import build_app
from serve_app.config import AppArgs

args, dashboard_port, http_port = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
ray.init(address="local", num_cpus=4, include_dashboard=True, dashboard_host="127.0.0.1",
         dashboard_port=dashboard_port, log_to_driver=False)
serve.start(http_options={"host": "127.0.0.1", "port": http_port})
serve.run(build_app(AppArgs.model_validate(args)), name="happykube")
print("READY", flush=True)
sys.stdin.read()
serve.shutdown()
ray.shutdown()
"""


def _fresh_shell_env() -> dict[str, str]:
    """The environment of an operator's new shell: no Ray auth settings inherited from a Ray
    this test process may have started (ray.init sets RAY_AUTH_MODE in its own environment)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "RAY_ADDRESS"))}


@pytest.fixture(scope="module")
def dashboard(tiny_app_args: dict[str, object], pg_url: str, app_redis_url: str) -> Iterator[str]:
    """The dashboard URL of a private Ray cluster serving the app; everything stopped after."""
    dashboard_port, http_port = free_port(), free_port()
    env = {
        **_fresh_shell_env(),
        "PYTHONPATH": str(REPO),
        "DATABASE_URL": pg_url,
        "REDIS_URL": app_redis_url,
        "HAPPYKUBE_BOOTSTRAP_API_KEY": TEST_API_KEY,
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SERVER,
            json.dumps(tiny_app_args),
            str(dashboard_port),
            str(http_port),
        ],
        cwd=REPO,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.strip() == "READY", f"the app did not start (exit {server.poll()})"
        yield f"http://127.0.0.1:{dashboard_port}"
    finally:
        if server.stdin:
            server.stdin.close()  # the server shuts Serve and its Ray down itself
        try:
            server.wait(timeout=120)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _wait_group_gone(pgid: int, timeout_s: float = 30.0) -> None:
    """Wait until no process of group `pgid` is left (SIGKILL what is left at the deadline)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return
    time.sleep(1)


def _token() -> str:
    return (Path.home() / ".ray" / "auth_token").read_text().strip()


def _serve_status(dashboard: str, **env: str) -> subprocess.CompletedProcess[str]:
    serve_cli = Path(sys.executable).with_name("serve")
    return subprocess.run(
        [str(serve_cli), "status", "--address", dashboard],
        env={**_fresh_shell_env(), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_serve_status_needs_the_token_mode_and_then_lists_the_deployments(dashboard: str) -> None:
    """Without RAY_AUTH_MODE the CLI sends no token and the dashboard refuses it; with
    RAY_AUTH_MODE=token (what the README's local flow says) it reads ~/.ray/auth_token."""
    refused = _serve_status(dashboard)
    assert refused.returncode != 0
    assert "Missing authentication token" in refused.stdout + refused.stderr
    assert httpx.get(f"{dashboard}/api/serve/applications/").status_code == 401

    answered = _serve_status(dashboard, RAY_AUTH_MODE="token")
    assert answered.returncode == 0, answered.stderr
    assert "happykube" in answered.stdout
    assert all(name in answered.stdout for name in DEPLOYMENTS), answered.stdout


class _DevTools:
    """Just enough of the Chrome DevTools Protocol: one page, commands in order."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0

    def __call__(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return dict(message.get("result", {}))


@pytest.fixture
def chromium() -> Iterator[_DevTools]:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    port = free_port()
    with tempfile.TemporaryDirectory() as profile:
        browser = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                f"--remote-debugging-port={port}",
                "--window-size=1400,1150",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Its own process group: Chromium's helpers (crashpad, utility processes) outlive
            # the main process and still write to the profile while it is being removed.
            start_new_session=True,
        )
        try:
            deadline, pages = time.monotonic() + 60, []
            while not pages and time.monotonic() < deadline:
                try:
                    targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json()
                    pages = [t for t in targets if t.get("type") == "page"]
                except httpx.HTTPError:
                    time.sleep(0.5)
            assert pages, "chromium's DevTools endpoint did not answer"
            from websockets.sync.client import connect

            with connect(pages[0]["webSocketDebuggerUrl"], max_size=None) as ws:
                yield _DevTools(ws)
        finally:
            os.killpg(browser.pid, signal.SIGTERM)
            browser.wait(timeout=30)
            _wait_group_gone(browser.pid)


def test_the_dashboard_serve_page_shows_the_deployments(
    dashboard: str, chromium: _DevTools
) -> None:
    """With the token set as the dashboard's login cookie, the Serve page lists the app and
    its deployments (what an operator pasting `ray get-auth-token` into the login sees)."""
    chromium("Network.enable")
    chromium("Network.setCookie", name="ray-authentication-token", value=_token(), url=dashboard)
    chromium("Page.enable")
    chromium("Page.navigate", url=f"{dashboard}/#/serve/applications/happykube")
    text, deadline = "", time.monotonic() + 90
    while time.monotonic() < deadline:
        text = chromium("Runtime.evaluate", expression="document.body.innerText")["result"].get(
            "value", ""
        )
        if all(name in text for name in DEPLOYMENTS) and "HEALTHY" in text:
            break
        time.sleep(1)
    shot = base64.b64decode(chromium("Page.captureScreenshot", format="png")["data"])
    if keep := os.environ.get("HAPPYKUBE_DASHBOARD_SCREENSHOT"):
        Path(keep).write_bytes(shot)
    assert shot.startswith(b"\x89PNG")
    missing = [name for name in DEPLOYMENTS if name not in text]
    assert not missing, f"the Serve page does not show {missing}: {text[:1500]}"
