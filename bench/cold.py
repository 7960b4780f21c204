"""Cold start: `serve run serve_config.yaml` (built-in models) to `/readyz` 200."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.paths import BENCH_KEY, REPO
from bench.procs import free_port, stop


def cold_start(timeout_s: float = 180.0) -> float:
    """Seconds from `serve run serve_config.yaml` (built-in models) to `/readyz` 200."""
    import httpx
    import yaml

    config = yaml.safe_load((REPO / "serve_config.yaml").read_text(encoding="utf-8"))
    port = free_port()
    config["http_options"]["port"] = port
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "serve_config.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        env = {
            **os.environ,
            "HAPPYKUBE_BOOTSTRAP_API_KEY": BENCH_KEY,
            "DATABASE_URL": f"sqlite:///{tmp}/history.db",
            "RAY_ADDRESS": "local",
        }
        start = time.perf_counter()
        # Ray's own CLI, next to this interpreter; the arguments are ours.
        serve_cli = str(Path(sys.executable).with_name("serve"))
        if not Path(serve_cli).exists():
            serve_cli = shutil.which("serve") or "serve"
        proc = subprocess.Popen(  # noqa: S603
            [serve_cli, "run", str(path)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while time.perf_counter() - start < timeout_s:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                        return time.perf_counter() - start
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None:
                    raise RuntimeError(f"serve run exited with {proc.returncode}")
                time.sleep(0.1)
            raise TimeoutError(f"not ready after {timeout_s:.0f}s")
        finally:
            # SIGTERM, not SIGINT: a program started in the background (`happykube bench &`)
            # inherits SIGINT ignored, and `serve run` then sat out the 60 s below and was
            # killed, leaving Ray's dashboard and runtime-env agents running.
            stop(proc, 60)
