"""`happykube bench`'s private Serve instance leaves nothing behind it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CODE = """
import os
from bench.procs import _haproxies, local_serve

before = _haproxies()
with local_serve():
    print("INSIDE", bool(_haproxies() - before), os.environ.get("RAY_SERVE_ENABLE_HA_PROXY"))
print("AFTER", sorted(_haproxies() - before), os.environ.get("RAY_SERVE_ENABLE_HA_PROXY"))
"""


def run_driver(code: str, *, timeout_s: float) -> subprocess.CompletedProcess[str]:
    """`code` as a bench driver of its own: a fresh process, local Ray, no Serve settings or
    database of the caller's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_SERVE_")}
    env.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**env, "RAY_ADDRESS": "local"},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def test_local_serve_restores_the_environment_and_leaves_no_haproxy() -> None:
    """Inside: high-throughput mode with its HAProxy. After: no HAProxy of its
    own left (it would hold ports 8404 and 9101) and the environment as it was, so the cold
    start measured next runs plain `serve run`."""
    done = run_driver(CODE, timeout_s=240)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout.splitlines()
    assert [line for line in out if line.startswith(("INSIDE", "AFTER"))] == [
        "INSIDE True 1",
        "AFTER [] None",
    ]


SERVES = """
import httpx
from bench.paths import BENCH_KEY, EN_LABELS, PathSpec
from bench.procs import local_serve
from bench.run import _deploy

path = PathSpec("en_tiny", "en", {"en_emotion": ("tiny", EN_LABELS)})
with local_serve() as url:
    _deploy(path, batched=True)
    answer = httpx.post(
        f"{url}/api/v1/emotion",
        json={"text": "I am so happy today", "language": "en"},
        headers={"X-API-Key": BENCH_KEY},
        timeout=60,
    )
    print("ANSWER", answer.status_code, answer.json().get("emotion"))
"""


def test_the_bench_key_gets_answers_from_the_deployed_path() -> None:
    """The bench's own deployment answers its key (a 503 from a key store it never made
    measured nothing: every request of the 2026-12-04 run failed that way)."""
    done = run_driver(SERVES, timeout_s=300)
    answers = [line for line in done.stdout.splitlines() if line.startswith("ANSWER")]
    assert answers and answers[0].startswith("ANSWER 200 "), done.stdout + done.stderr[-3000:]
