"""Run the production overlay's Ray cluster on this machine, one Ray node per pod role.

`python -m tests.integration.production_boot SPEC.json` (run by test_production_boot.py in a
process of its own, so it never meets the suite's session-wide Ray instance). SPEC holds
each role's environment, exactly as `kuberay.environment.container_env` builds it from the
rendered overlay, and the serve config to apply. The nodes: a head with no CPUs (as its
`num-cpus: "0"`), an `api` node and two `models` nodes with the overlay's custom resources,
each raylet started with its role's variables only, so a replica sees what its pod would.
The config goes to the Serve controller as KubeRay sends serveConfigV2 (`deploy_apps`; the
app is built on the cluster, in the head's environment). Prints one JSON line per event.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

_START = time.monotonic()


def _say(**event: Any) -> None:
    print(json.dumps({**event, "t": round(time.monotonic() - _START, 1)}), flush=True)


def _app_state(name: str) -> tuple[str, str]:
    """The application's status and every message Serve has for it and its deployments."""
    from ray import serve

    app = serve.status().applications.get(name)
    if app is None:
        return "ABSENT", ""
    messages = [app.message] + [d.message for d in app.deployments.values()]
    return str(app.status.value), "\n".join(m for m in messages if m)


def main(spec_path: str) -> int:
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster
    from ray.serve.schema import ServeDeploySchema

    from tests.redis_server import free_port

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    envs: dict[str, dict[str, str]] = spec["envs"]
    nodes: dict[str, dict[str, Any]] = spec["nodes"]
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "dashboard_agent_listen_port": free_port(),
            "include_dashboard": False,
            "env_vars": envs["head"],
        },
    )
    try:
        workers = {}
        for role in ("api", "models"):
            for i in range(nodes[role]["count"]):
                workers[f"{role}{i}"] = cluster.add_node(
                    num_cpus=nodes[role]["num_cpus"],
                    resources=nodes[role]["resources"],
                    env_vars=envs[role],
                )
        ray.init(address=cluster.address, log_to_driver=False)
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        config = spec["config"]
        config["http_options"] = {**config.get("http_options", {}), "port": port}
        client = serve.context._get_global_client()
        client.deploy_apps(ServeDeploySchema.model_validate(config))
        name = config["applications"][0]["name"]
        _say(event="deployed", url=f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + spec["timeout_s"]
        state, message = "", ""
        while time.monotonic() < deadline:
            state, message = _app_state(name)
            if state in {"RUNNING", "DEPLOY_FAILED"} or "refusing to start" in message:
                break
            time.sleep(1)
        _say(event="status", status=state, message=message)
        # The test drives the running app over HTTP, then asks for the second act: the api
        # pod restarted without one secret.
        for line in sys.stdin:
            command = json.loads(line)
            if command["do"] == "restart_api":
                for key in [k for k in workers if k.startswith("api")]:
                    cluster.remove_node(workers.pop(key))
                workers["api-new"] = cluster.add_node(
                    num_cpus=nodes["api"]["num_cpus"],
                    resources=nodes["api"]["resources"],
                    env_vars=command["env"],
                )
                deadline = time.monotonic() + spec["timeout_s"]
                while time.monotonic() < deadline:
                    state, message = _app_state(name)
                    if "refusing to start" in message or state == "DEPLOY_FAILED":
                        break
                    time.sleep(1)
                _say(event="status", status=state, message=message)
            elif command["do"] == "stop":
                break
        return 0
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            cluster.shutdown()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
