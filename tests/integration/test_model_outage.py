"""A model replica killed under the served app: its language degrades, nothing else breaks.

The English model's replica is killed with `ray.kill` (no restart of that actor: Serve's
controller notices and starts a new replica). Meanwhile Italian keeps answering, English
answers either normally (Serve routed it to the new replica) or with the stable
`model_unavailable` 503, never a 500 or a hang, and the service recovers by itself.
"""

from __future__ import annotations

import time

import httpx


def _replicas(app: str, deployment: str) -> dict[str, object]:
    """The live replica actors of one deployment, by actor name (one per replica id)."""
    import ray

    named = ray.util.list_named_actors(all_namespaces=True)
    return {
        actor["name"]: ray.get_actor(actor["name"], namespace=actor["namespace"])
        for actor in named
        if f"{app}#{deployment}#" in actor["name"]
    }


def _is_dead(actor: object) -> bool:
    import ray

    try:
        ray.get(actor.__ray_ready__.remote(), timeout=5)  # type: ignore[attr-defined]
    except ray.exceptions.RayActorError:
        return True
    return False


def test_a_dead_model_replica_degrades_its_language_then_recovers(
    serve_url: str, api_headers: dict[str, str]
) -> None:
    import ray

    english = {"text": "I am so angry about the delay", "language": "en"}
    italian = {"text": "Oggi sono felicissima, che bella giornata!"}
    with httpx.Client(base_url=serve_url, headers=api_headers, timeout=30) as http:
        assert http.post("/api/v1/emotion", json=english).status_code == 200
        replicas = _replicas("happykube", "en_emotion")
        assert replicas, "no en_emotion replica found to kill"
        for actor in replicas.values():
            ray.kill(actor, no_restart=True)
        # The kill took: the old replicas are dead (a no-op kill would fail here).
        assert all(_is_dead(actor) for actor in replicas.values())

        during = http.post("/api/v1/emotion", json=english)
        assert during.status_code in (200, 503), during.text
        if during.status_code == 503:
            assert during.json()["error"]["code"] == "model_unavailable"
        other = http.post("/api/v1/emotion", json=italian)
        assert other.status_code == 200, other.text
        assert other.json()["language"] == "it"

        deadline = time.monotonic() + 120
        statuses = []
        while time.monotonic() < deadline:
            r = http.post("/api/v1/emotion", json=english)
            statuses.append(r.status_code)
            assert r.status_code in (200, 503), r.text
            if r.status_code == 200 and http.get("/readyz").status_code == 200:
                break
            time.sleep(1)
        else:
            raise AssertionError(f"English never recovered: {statuses[-10:]}")
        assert r.json()["language"] == "en"
        # Recovered by a new replica, not by the old one surviving.
        assert _replicas("happykube", "en_emotion").keys().isdisjoint(replicas)
