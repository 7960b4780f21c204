"""A real two-node Ray cluster on one machine: deploy, spread, kill a node under traffic.

This is what a KubeRay worker group does, without Kubernetes. Each `ray start` below is one
pod: the head node is the `headGroupSpec` pod (GCS, dashboard, Serve controller, the Serve
proxy), the worker node is one pod of a `workerGroupSpecs` group (its own raylet, CPUs and
memory). Killing the worker's process tree with SIGKILL is a pod being evicted or its node
dying; starting it again with the same arguments is KubeRay replacing the pod to hold
`minReplicas`. The Serve config is deployed through the dashboard's REST API, the same call
KubeRay makes with `serveConfigV2`.

Running two nodes on one machine needs what a pod gets for free: its own ports (every
`ray start` port option, worker-port range and `--dashboard-agent-listen-port` differs
between the nodes), its own `--memory` and `--num-cpus` (else each node counts the whole
machine), and one Serve proxy only (`proxy_location: HeadOnly`), since every proxy binds the
same HTTP port and both nodes share 127.0.0.1. Every process binds 127.0.0.1: Ray's GCS and
dashboard have no authentication.

`ray stop` is never used: it stops every Ray process of the machine, other people's
clusters included. Each node runs in its own process session under its own `--temp-dir`,
and is stopped by killing exactly those process ids.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kuberay.render import REPO_ROOT

HOST = "127.0.0.1"
GCS_PORT = 6390  # never 6379: the machine's Redis holds it
DASHBOARD_PORT = 8266
SERVE_PORT = 8100
# A fixed path on purpose: it names this cluster's processes (see `NodeProcess.kill`).
TEMP_ROOT = Path("/tmp/happykube-multinode")  # noqa: S108
TOKEN_FILE = TEMP_ROOT / "auth_token"
APP = "happykube"
GIB = 1024**3


@dataclass(frozen=True)
class Node:
    """One `ray start`: the ports, CPUs and memory a pod would have to itself."""

    role: str
    num_cpus: int
    memory_gib: float
    node_manager_port: int
    object_manager_port: int
    agent_listen_port: int
    agent_grpc_port: int
    metrics_port: int
    runtime_env_port: int
    min_worker_port: int
    max_worker_port: int

    @property
    def temp_dir(self) -> Path:
        return TEMP_ROOT / self.role

    def start_args(self) -> list[str]:
        """The `ray start` arguments of this node (head or worker)."""
        args = [
            "start",
            "--block",
            "--disable-usage-stats",
            f"--node-ip-address={HOST}",
            f"--num-cpus={self.num_cpus}",
            f"--memory={int(self.memory_gib * GIB)}",
            f"--object-store-memory={256 * 1024**2}",
            f"--node-manager-port={self.node_manager_port}",
            f"--object-manager-port={self.object_manager_port}",
            f"--dashboard-agent-listen-port={self.agent_listen_port}",
            f"--dashboard-agent-grpc-port={self.agent_grpc_port}",
            f"--metrics-export-port={self.metrics_port}",
            f"--runtime-env-agent-port={self.runtime_env_port}",
            f"--min-worker-port={self.min_worker_port}",
            f"--max-worker-port={self.max_worker_port}",
            f"--temp-dir={self.temp_dir}",
            f"--labels=happykube/node={self.role}",
        ]
        if self.role == "head":
            return [
                *args,
                "--head",
                f"--port={GCS_PORT}",
                f"--dashboard-host={HOST}",
                f"--dashboard-port={DASHBOARD_PORT}",
                "--ray-client-server-port=10101",
            ]
        return [*args, f"--address={HOST}:{GCS_PORT}"]


HEAD = Node("head", 2, 3.0, 6391, 6392, 52390, 52391, 52392, 52393, 21000, 21199)
WORKER = Node("worker", 2, 3.0, 6393, 6394, 52394, 52395, 52396, 52397, 21200, 21399)


@dataclass
class Phase:
    """Requests sent in one stretch of the run and what became of them."""

    name: str
    served: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)


@dataclass
class Report:
    """What the run showed; `ok` when service held through the outage and recovered."""

    placement_before: dict[str, list[str]] = field(default_factory=dict)
    placement_after: dict[str, list[str]] = field(default_factory=dict)
    phases: list[Phase] = field(default_factory=list)
    worker_dead_after_s: float = 0.0
    worker_restart_s: float = 0.0
    ok: bool = False
    reasons: list[str] = field(default_factory=list)

    def as_json(self) -> str:
        data = asdict(self)
        for phase in data["phases"]:
            phase["errors"] = dict(phase["errors"])
        return json.dumps(data, sort_keys=True)


class NodeProcess:
    """A running `ray start --block` and every process it spawned, in its own session."""

    def __init__(self, node: Node, env: dict[str, str]) -> None:
        self.node = node
        node.temp_dir.mkdir(parents=True, exist_ok=True)
        log = (TEMP_ROOT / f"{node.role}.log").open("ab")
        ray = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
        self.popen = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [ray, *node.start_args()],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def _pids(self) -> list[int]:
        """This node's processes: its session's members and anything naming its temp dir.

        Read from /proc (Linux): every process `ray start` spawns stays in the session it was
        started in, and every Ray process of the node names the node's temp dir.
        """
        marker = str(self.node.temp_dir).encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            try:
                mine = os.getsid(pid) == self.popen.pid
                mine = mine or marker in (entry / "cmdline").read_bytes()
            except (ProcessLookupError, FileNotFoundError, PermissionError):
                continue
            if mine and pid != os.getpid():
                found.append(pid)
        return found

    def kill(self) -> None:
        """SIGKILL every process of this node: what a pod eviction does to it."""
        deadline = time.monotonic() + 20
        while (pids := self._pids()) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=0.5)
            time.sleep(0.5)


def kill_leftovers() -> int:
    """SIGKILL any process still naming TEMP_ROOT (a run killed before its cleanup ran)."""
    marker = str(TEMP_ROOT).encode()
    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(ProcessLookupError, FileNotFoundError, PermissionError):
            if marker in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
    return killed


def demo_config(path: Path) -> dict[str, Any]:
    """The serve config to deploy: every deployment spread one replica per node."""
    config: dict[str, Any] = copy.deepcopy(yaml.safe_load(path.read_text(encoding="utf-8")))
    config["proxy_location"] = "HeadOnly"
    config["http_options"] = {**config.get("http_options", {}), "host": HOST, "port": SERVE_PORT}
    for app in config["applications"]:
        # The load below is one client at RATE per second: its key must not be rate-limited,
        # and repeated texts must reach the models, not the cache.
        protection = app.setdefault("args", {}).setdefault("protection", {})
        protection.update({"key_rate_per_minute": 1_000_000, "cache_enabled": False})
        for spec in app.get("args", {}).get("models", {}).values():
            source = Path(spec["source"])
            if not source.is_absolute() and (REPO_ROOT / source).exists():
                spec["source"] = str(REPO_ROOT / source)
        for dep in app.get("deployments", []):
            # Two replicas, at most one per node: each deployment has a replica on both nodes,
            # and while one node is gone its replica has nowhere to go but back to it. Pinned
            # through autoscaling bounds, because a deployment autoscaled in code keeps
            # autoscaling whatever `num_replicas` the config gives.
            dep.pop("num_replicas", None)
            dep["autoscaling_config"] = {
                **dep.get("autoscaling_config", {}),
                "min_replicas": 2,
                "initial_replicas": 2,
                "max_replicas": 2,
            }
            dep["max_replicas_per_node"] = 1
    return config


def _auth() -> dict[str, str]:
    """The dashboard's bearer token header (Ray's token authentication, on for this cluster)."""
    return {"Authorization": f"Bearer {TOKEN_FILE.read_text(encoding='utf-8').strip()}"}


def _get(url: str, timeout: float = 5.0) -> Any:
    import httpx

    response = httpx.get(url, timeout=timeout, headers=_auth())
    response.raise_for_status()
    return response.json()


def _wait(what: str, check: Any, timeout_s: float, every_s: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout_s
    last_error = ""
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # the cluster answers errors while it starts
            last_error = f"{type(exc).__name__}: {exc}"
        time.sleep(every_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what} {last_error}")


def alive_nodes() -> dict[str, str]:
    """node_id -> role ("head"/"worker") of the nodes the GCS considers alive."""
    data = _get(f"http://{HOST}:{DASHBOARD_PORT}/api/v0/nodes?limit=100")
    nodes = data["data"]["result"]["result"]
    return {
        n["node_id"]: ("head" if n.get("is_head_node") else "worker")
        for n in nodes
        if n.get("state") == "ALIVE"
    }


def placement() -> dict[str, list[str]]:
    """deployment -> sorted roles of the nodes holding its RUNNING replicas."""
    roles = alive_nodes()
    data = _get(f"http://{HOST}:{DASHBOARD_PORT}/api/serve/applications/")
    app = data.get("applications", {}).get(APP, {})
    return {
        name: sorted(
            roles.get(r.get("node_id", ""), "gone")
            for r in dep.get("replicas", [])
            if r.get("state") == "RUNNING"
        )
        for name, dep in app.get("deployments", {}).items()
    }


def spread_on_both(place: dict[str, list[str]]) -> bool:
    return bool(place) and all(roles == ["head", "worker"] for roles in place.values())


def deploy(config: dict[str, Any]) -> None:
    """PUT the config to the dashboard, as KubeRay does with serveConfigV2."""
    import httpx

    response = httpx.put(
        f"http://{HOST}:{DASHBOARD_PORT}/api/serve/applications/",
        json=config,
        timeout=60,
        headers=_auth(),
    )
    response.raise_for_status()


TEXTS = ("Oggi sono felicissima!", "I am so angry about this.", "Che paura, domani ho l'esame")


RATE = 10.0  # requests per second: steady enough to see an outage, light on 2 cores


def send(phase: Phase, client: Any, seconds: float, cap: int) -> None:
    """Send requests at RATE for `seconds` (at most `cap` of them), counting the answers."""
    import httpx

    start = time.monotonic()
    sent = 0
    while time.monotonic() - start < seconds and sent < cap:
        try:
            response = client.post(
                f"http://{HOST}:{SERVE_PORT}/api/v1/emotion", json={"text": TEXTS[sent % 3]}
            )
            if response.status_code == 200:
                phase.served += 1
            else:
                phase.failed += 1
                phase.errors[f"http {response.status_code}"] += 1
        except httpx.HTTPError as exc:
            phase.failed += 1
            phase.errors[type(exc).__name__] += 1
        sent += 1
        time.sleep(max(0.0, start + sent / RATE - time.monotonic()))
    phase.seconds += time.monotonic() - start


# A throwaway key, valid only on this run's own cluster.
API_KEY = "hk_multinode_" + secrets.token_urlsafe(32)


def _print(message: str) -> None:
    print(message, flush=True)


def node_env() -> dict[str, str]:
    """The environment of a node: the repo importable (as the image's site-packages would
    make it in a pod), no usage reporting, no model hub."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
        "RAY_USAGE_STATS_ENABLED": "0",
        "HF_HUB_OFFLINE": "1",
        # Token authentication on, with this cluster's own token (not ~/.ray/auth_token):
        # the GCS and dashboard refuse callers without it, as KubeRay's authOptions does.
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(TOKEN_FILE),
        # The app's own API key for this run's client (the ingress registers it at start).
        "HAPPYKUBE_BOOTSTRAP_API_KEY": API_KEY,
    }


@contextlib.contextmanager
def cluster() -> Iterator[dict[str, NodeProcess]]:
    """Start head and worker; always kill both (by process id) on the way out."""
    kill_leftovers()
    shutil.rmtree(TEMP_ROOT, ignore_errors=True)
    TEMP_ROOT.mkdir(parents=True)
    TOKEN_FILE.touch(mode=0o600)
    TOKEN_FILE.write_text(secrets.token_hex(32), encoding="utf-8")
    env = node_env()
    nodes: dict[str, NodeProcess] = {}
    try:
        nodes["head"] = NodeProcess(HEAD, env)
        _wait("the head's dashboard", alive_nodes, 120)
        nodes["worker"] = NodeProcess(WORKER, env)
        _wait("the worker to join", lambda: len(alive_nodes()) == 2, 120)
        yield nodes
    finally:
        for key in ("worker", "head"):
            if key in nodes:
                nodes[key].kill()


def run_demo(
    config: Path = Path("serve_config.yaml"), max_requests: int = 400, outage_s: float = 30.0
) -> Report:
    """Deploy on two nodes, kill the worker under traffic, restart it; print the report."""
    import httpx

    report = Report()
    path = config if config.is_absolute() else REPO_ROOT / config
    with cluster() as nodes, httpx.Client(timeout=10.0, headers={"X-API-Key": API_KEY}) as client:
        _print(f"cluster up: head + worker on {HOST}, GCS :{GCS_PORT}, dashboard :{DASHBOARD_PORT}")
        deploy(demo_config(path))
        report.placement_before = _wait("replicas on both nodes", _spread_placement, 420, 2.0)
        _print(f"placement before: {report.placement_before}")
        _wait("the app to answer", lambda: _answers(client), 120)

        before = Phase("before")
        send(before, client, 5.0, max_requests)
        report.phases.append(before)

        _print("killing the worker node (SIGKILL of its whole process tree)")
        killed = time.monotonic()
        nodes["worker"].kill()
        outage = Phase("outage")
        # Keep the worker down at least `outage_s` and until the GCS has declared it dead,
        # so the outage covers the window where Serve still routes to its replicas.
        while time.monotonic() - killed < 120 and outage.served + outage.failed < max_requests:
            send(outage, client, 1.0, max_requests)
            if not report.worker_dead_after_s and len(alive_nodes()) == 1:
                report.worker_dead_after_s = round(time.monotonic() - killed, 1)
            if report.worker_dead_after_s and time.monotonic() - killed >= outage_s:
                break
        report.phases.append(outage)

        _print("starting the worker node again")
        restarted = time.monotonic()
        nodes["worker"] = NodeProcess(WORKER, node_env())
        recovery = Phase("recovery")
        while (
            time.monotonic() - restarted < 420
            and recovery.served + recovery.failed < 10 * max_requests
        ):
            send(recovery, client, 2.0, max_requests)
            if spread_on_both(placement()):
                break
        report.worker_restart_s = round(time.monotonic() - restarted, 1)
        report.phases.append(recovery)
        report.placement_after = placement()
        after = Phase("after")
        send(after, client, 5.0, max_requests)
        report.phases.append(after)
    _judge(report)
    for phase in report.phases:
        _print(
            f"{phase.name:>9}: served {phase.served:4d}  failed {phase.failed:4d}  "
            f"in {phase.seconds:5.1f}s  {dict(phase.errors) or ''}"
        )
    _print(f"placement after: {report.placement_after}")
    _print(f"worker declared dead by the GCS {report.worker_dead_after_s}s after the kill")
    _print(f"worker back with replicas after {report.worker_restart_s}s; ok={report.ok}")
    for reason in report.reasons:
        _print(f"problem: {reason}")
    _print(report.as_json())
    return report


def _spread_placement() -> dict[str, list[str]] | None:
    place = placement()
    return place if spread_on_both(place) else None


def _answers(client: Any) -> bool:
    response = client.post(f"http://{HOST}:{SERVE_PORT}/api/v1/emotion", json={"text": "ciao"})
    return bool(response.status_code == 200)


def _judge(report: Report) -> None:
    phases = {p.name: p for p in report.phases}
    if not spread_on_both(report.placement_before):
        report.reasons.append("replicas were not on both nodes before the outage")
    if phases["before"].failed:
        report.reasons.append("requests failed before any node was killed")
    if not phases["outage"].served:
        report.reasons.append("nothing was served while the worker node was down")
    if not spread_on_both(report.placement_after):
        report.reasons.append("replicas did not return to the restarted worker")
    if phases["after"].failed:
        report.reasons.append("requests failed after recovery")
    report.ok = not report.reasons
