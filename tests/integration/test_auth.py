"""API keys: the CLI, 401/403, revocation, last use, the bootstrap key, database outages."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import select

from db import audit
from db.models import ApiKey, AuditEvent, EmotionRecord, User
from db.session import Database
from serve_app.auth import HEADER, KeyVerifier, hash_key, key_prefix
from serve_app.config import ProtectionArgs
from serve_app.redis_conn import RedisLink
from tests.integration.app_env import (
    PEPPER,
    ServedGraph,
    client_for,
    new_key,
    real_app,
    shared_link,
)
from tests.integration.history_env import ROOT, cli_env, key_spec, make_secrets

KEY_FORMAT = re.compile(r"^hk_[A-Za-z0-9_-]{43}$")  # 32 random bytes, URL-safe base64


@pytest.fixture
async def link() -> AsyncIterator[RedisLink]:
    async with shared_link() as redis:
        yield redis


def run_cli(args: list[str], pg_url: str) -> subprocess.CompletedProcess[str]:
    env = cli_env(pg_url, keys=key_spec("k1"), active="k1")
    env["HAPPYKUBE_API_KEY_PEPPER"] = base64.b64encode(PEPPER).decode()
    command = [sys.executable, "-m", "serve_app.cli", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)


def cli_pepper() -> bytes:
    return base64.b64encode(PEPPER)  # what the CLI's environment holds, as bytes


async def test_missing_unknown_and_malformed_keys_get_401(
    database: Database, link: RedisLink, served_graph: ServedGraph
) -> None:
    async with client_for(real_app(served_graph, database, link)) as http:
        for headers in ({}, {HEADER: ""}, {HEADER: "hk_" + "A" * 43}, {HEADER: "x" * 5000}):
            r = await http.post("/api/v1/emotion", json={"text": "ciao"}, headers=headers)
            assert r.status_code == 401, r.text
            assert r.json()["error"]["code"] == "unauthorized"


async def test_cli_key_lifecycle_with_audit_trail(
    pg_url: str, link: RedisLink, served_graph: ServedGraph
) -> None:
    """create prints a key of a client once (hash and prefix stored), it works, list shows
    its client and hides it, revoke makes it 401, and both acts are in `happykube audit`."""
    created = run_cli(
        ["keys", "create", "--client", "cli-client", "--name", "cli-test", "--scopes",
         "emotion:write"],
        pg_url,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert KEY_FORMAT.match(key), "stdout must hold the key alone"
    assert key not in created.stderr

    database = Database(pg_url, make_secrets())
    try:
        async with database.session() as session:
            row = await session.scalar(select(ApiKey).where(ApiKey.prefix == key_prefix(key)))
        assert row is not None
        assert row.key_hash == hash_key(cli_pepper(), key) and key not in row.key_hash
        assert row.scopes == ["emotion:write"] and row.last_used_at is None
        assert row.client == "cli-client" and "cli-client" in created.stderr
        assert "cli-client is a new client" in created.stderr  # a mistyped rotation shows

        # The app must use the CLI's pepper to recognise the key.
        app = real_app(
            served_graph, database, link, ProtectionArgs(key_cache_s=0), pepper=cli_pepper()
        )
        async with client_for(app) as http:
            r = await http.post("/api/v1/emotion", json={"text": "ciao"}, headers={HEADER: key})
            assert r.status_code == 200, r.text
            assert r.json()["language"] == "it" and r.json()["stored"] is False

            listed = run_cli(["keys", "list", "--json"], pg_url)
            assert listed.returncode == 0 and key not in listed.stdout
            mine = [json.loads(line) for line in listed.stdout.splitlines()]
            assert {"id": str(row.id), "prefix": key[:11], "client": "cli-client"}.items() <= next(
                item for item in mine if item["id"] == str(row.id)
            ).items()
            table = run_cli(["keys", "list", "--client", "cli-client"], pg_url)
            assert table.returncode == 0 and table.stdout.count("\n") == 1
            assert f"{key[:11]}...  cli-client  cli-test" in table.stdout

            revoked = run_cli(["keys", "revoke", key[:11]], pg_url)
            assert revoked.returncode == 0, revoked.stderr
            r = await http.post("/api/v1/emotion", json={"text": "ciao"}, headers={HEADER: key})
            assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]

        trail = run_cli(["audit", "--json", "--target", str(row.id)], pg_url)
        events = [json.loads(line) for line in trail.stdout.splitlines()]
        assert [e["action"] for e in events] == [audit.KEY_REVOKED, audit.KEY_CREATED]
        assert all(e["actor"].startswith("cli:") for e in events)
        assert key not in trail.stdout
        # The client's next key (its first is revoked) reaches the same histories: no note.
        second = run_cli(["keys", "create", "--client", "cli-client", "--name", "cli-2"], pg_url)
        assert second.returncode == 0 and "new client" not in second.stderr, second.stderr
    finally:
        await database.dispose()


async def test_cli_refuses_unknown_scopes_and_bad_or_missing_clients(pg_url: str) -> None:
    bad = run_cli(
        ["keys", "create", "--client", "c", "--name", "x", "--scopes", "emotion:write,root"], pg_url
    )
    assert bad.returncode == 2 and "scopes must be" in bad.stderr
    bad = run_cli(["keys", "create", "--client", "a/b", "--name", "x"], pg_url)
    assert bad.returncode == 2 and "a client is 1-64 characters" in bad.stderr
    missing = run_cli(["keys", "create", "--name", "x"], pg_url)
    assert missing.returncode == 2 and "--client" in missing.stderr


async def test_scopes_answer_403(
    database: Database, link: RedisLink, served_graph: ServedGraph
) -> None:
    reader, _ = await new_key(database, "history:read")
    analyst, _ = await new_key(database, "emotion:write")
    admin, _ = await new_key(database, "admin")
    async with client_for(real_app(served_graph, database, link)) as http:
        r = await http.post("/api/v1/emotion", json={"text": "ciao"}, headers={HEADER: reader})
        assert r.status_code == 403 and r.json()["error"]["details"] == {"scope": "emotion:write"}
        # Storing needs history:write on top of emotion:write.
        body = {"text": "ciao", "user_id": "42"}
        r = await http.post("/api/v1/emotion", json=body, headers={HEADER: analyst})
        assert r.status_code == 403 and r.json()["error"]["details"] == {"scope": "history:write"}
        r = await http.get("/api/v1/users/42/report", headers={HEADER: analyst})
        assert r.status_code == 403
        r = await http.delete("/api/v1/users/42", headers={HEADER: reader})
        assert r.status_code == 403 and r.json()["error"]["details"] == {"scope": "history:write"}
        # A reader may read (404: nobody stored yet); admin may do everything.
        assert (
            await http.get("/api/v1/users/42/report", headers={HEADER: reader})
        ).status_code == 404
        r = await http.post("/api/v1/emotion", json=body, headers={HEADER: admin})
        assert r.status_code == 200


async def test_clients_keep_users_apart(
    database: Database, link: RedisLink, served_graph: ServedGraph
) -> None:
    """The users API scopes users by the key's client: another client's user is a 404."""
    first, _ = await new_key(database, "history:read", "history:write")
    second, _ = await new_key(database, "history:read", "history:write")
    async with client_for(real_app(served_graph, database, link)) as http:
        settings = {"timezone": "Europe/Rome"}
        r = await http.patch("/api/v1/users/777", json=settings, headers={HEADER: first})
        assert r.status_code == 200, r.text
        assert (
            await http.get("/api/v1/users/777/report", headers={HEADER: first})
        ).status_code == 200
        r = await http.get("/api/v1/users/777/report", headers={HEADER: second})
        assert r.status_code == 404


async def test_exports_and_erasures_are_audited_without_content(
    database: Database, link: RedisLink, served_graph: ServedGraph
) -> None:
    key, key_id = await new_key(database, "history:read", "history:write")
    headers = {HEADER: key}
    async with client_for(real_app(served_graph, database, link)) as http:
        r = await http.patch("/api/v1/users/5550001", json={"language": "it"}, headers=headers)
        assert r.status_code == 200
        assert (await http.get("/api/v1/users/5550001/export", headers=headers)).status_code == 200
        assert (await http.delete("/api/v1/users/5550001", headers=headers)).status_code == 204
        assert (await http.delete("/api/v1/users/5550001", headers=headers)).status_code == 404
    async with database.session() as session:
        events = await audit.query(session, actor=key_id)
    assert [e.action for e in events] == [audit.USER_ERASED, audit.USER_EXPORTED]
    assert events[0].target == events[1].target  # the user's row id
    assert "5550001" not in json.dumps([[e.target, e.details] for e in events])


async def test_last_used_at_is_kept(
    database: Database, link: RedisLink, served_graph: ServedGraph
) -> None:
    key, key_id = await new_key(database)
    async with client_for(real_app(served_graph, database, link)) as http:
        r = await http.post("/api/v1/emotion", json={"text": "ciao"}, headers={HEADER: key})
        assert r.status_code == 200
    for _ in range(50):  # written off the request path
        async with database.session() as session:
            row = await session.get(ApiKey, uuid.UUID(key_id))
        assert row is not None
        if row.last_used_at is not None:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("last_used_at was never written")


async def test_keys_sharing_a_prefix_are_told_apart_by_hash(
    database: Database, link: RedisLink, served_graph: ServedGraph
) -> None:
    key, _ = await new_key(database)
    async with database.session() as session:
        session.add(
            ApiKey(
                key_hash="0" * 64,
                prefix=key_prefix(key),
                client="decoy",
                name="decoy",
                scopes=["admin"],
            )
        )
    async with client_for(real_app(served_graph, database, link)) as http:
        r = await http.post("/api/v1/emotion", json={"text": "ciao"}, headers={HEADER: key})
        assert r.status_code == 200, r.text  # the decoy (same prefix, admin) never matched


async def test_bootstrap_key_is_registered_once_and_audited(
    database: Database, link: RedisLink, served_graph: ServedGraph
) -> None:
    bootstrap = "hk_bootstrap-" + uuid.uuid4().hex
    for _ in range(2):  # two start-ups (or replicas): one row, one audit event
        app = real_app(served_graph, database, link, bootstrap_key=bootstrap)
        async with client_for(app) as http:
            r = await http.post(
                "/api/v1/emotion",
                json={"text": "ciao", "user_id": "b1"},
                headers={HEADER: bootstrap},
            )
            assert r.status_code == 200 and r.json()["stored"], r.text
    async with database.session() as session:
        rows = (
            await session.scalars(
                select(ApiKey).where(ApiKey.key_hash == hash_key(PEPPER, bootstrap))
            )
        ).all()
        assert len(rows) == 1 and rows[0].name == "bootstrap"
        record = await session.get(EmotionRecord, uuid.UUID(r.json()["record_id"]))
        assert record is not None
        owner = await session.get(User, record.user_id)
        assert rows[0].client == "bootstrap"
        assert owner is not None and owner.client == "bootstrap"
        events = (
            await session.scalars(select(AuditEvent).where(AuditEvent.target == str(rows[0].id)))
        ).all()
        assert [e.action for e in events] == [audit.KEY_CREATED]


async def test_bootstrap_key_works_without_any_database(
    link: RedisLink, served_graph: ServedGraph
) -> None:
    bootstrap = "hk_local-" + uuid.uuid4().hex
    async with client_for(real_app(served_graph, None, link, bootstrap_key=bootstrap)) as http:
        ok = await http.post("/api/v1/emotion", json={"text": "ciao"}, headers={HEADER: bootstrap})
        assert ok.status_code == 200
        other = await http.post(
            "/api/v1/emotion", json={"text": "ciao"}, headers={HEADER: "hk_x" * 9}
        )
        assert other.status_code == 401


async def test_database_outage_keeps_known_keys_working(
    database: Database, link: RedisLink, served_graph: ServedGraph
) -> None:
    """A key verified before the outage keeps analysing; an unseen key gets 503, not 500."""
    known, _ = await new_key(database, "emotion:write", "history:read")
    unseen, _ = await new_key(database)
    args = ProtectionArgs(key_cache_s=0)
    verifier = KeyVerifier(PEPPER, cache_s=args.key_cache_s)
    dead = Database("postgresql://postgres@127.0.0.1:1/none", make_secrets())
    try:
        async with client_for(real_app(served_graph, database, link, args, keys=verifier)) as http:
            r = await http.post("/api/v1/emotion", json={"text": "ciao"}, headers={HEADER: known})
            assert r.status_code == 200
        # The same replica's verifier, now with its database unreachable.
        async with client_for(real_app(served_graph, dead, link, args, keys=verifier)) as http:
            r = await http.post("/api/v1/emotion", json={"text": "ciao"}, headers={HEADER: known})
            assert r.status_code == 200 and r.json()["emotion"]
            r = await http.post("/api/v1/emotion", json={"text": "ciao"}, headers={HEADER: unseen})
            assert r.status_code == 503
            assert r.json()["error"]["code"] == "storage_unavailable"
            # The history needs the database: a clear 503 too.
            r = await http.get("/api/v1/users/1/report", headers={HEADER: known})
            assert r.status_code == 503
            assert r.json()["error"]["code"] == "storage_unavailable"
    finally:
        await dead.dispose()


async def test_production_refuses_a_missing_pepper(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from serve_app.config import ProtectionSettings

    monkeypatch.delenv("HAPPYKUBE_API_KEY_PEPPER", raising=False)
    monkeypatch.setenv("HAPPYKUBE_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="HAPPYKUBE_API_KEY_PEPPER"):
        ProtectionSettings()
    monkeypatch.setenv("HAPPYKUBE_API_KEY_PEPPER", "CHANGE_ME_RANDOM_32_BYTES_0123456789")
    with pytest.raises(ValidationError, match="HAPPYKUBE_API_KEY_PEPPER"):
        ProtectionSettings()


# --- Through Ray Serve: the real ingress wiring ------------------------------------------


async def test_served_routes_need_a_key_and_expose_no_admin_surface(
    serve_url: str, api_headers: dict[str, str]
) -> None:
    async with httpx.AsyncClient(base_url=serve_url, timeout=30) as http:
        r = await http.post("/api/v1/emotion", json={"text": "ciao"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        wrong = {HEADER: "hk_" + "B" * 43}
        r = await http.post("/api/v1/emotion/batch", json={"texts": ["ciao"]}, headers=wrong)
        assert r.status_code == 401
        assert (await http.get("/api/v1/users/1/report")).status_code == 401
        ok = await http.post("/api/v1/emotion", json={"text": "ciao"}, headers=api_headers)
        assert ok.status_code == 200 and ok.headers["RateLimit-Limit"] == "100000"
        # Health and docs stay open; Ray's dashboard and APIs are not the app's routes.
        assert (await http.get("/healthz")).status_code == 200
        for path in ("/dashboard", "/api/jobs/", "/api/serve/applications/", "/api/v0/nodes"):
            assert (await http.get(path, headers=api_headers)).status_code == 404, path
        paths = set((await http.get("/openapi.json")).json()["paths"])
        assert all(p.startswith(("/api/v1/", "/healthz", "/readyz")) for p in paths)
        # No CORS origins configured: a browser preflight gets no allow header.
        preflight = await http.options(
            "/api/v1/emotion",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in preflight.headers


async def test_an_unreachable_database_is_asked_once_per_cache_window(database: Database) -> None:
    """Through an outage a known key is served from memory; the dead database is retried
    after `cache_s`, not on every request (each retry costs a connection timeout)."""
    known, key_id = await new_key(database, "emotion:write")
    lookups = 0

    class Counting(KeyVerifier):
        async def _lookup(self, database: Database, key: str, digest: str) -> ApiKey | None:
            nonlocal lookups
            lookups += 1
            return await super()._lookup(database, key, digest)

    verifier = Counting(PEPPER, cache_s=0.5)
    assert (await verifier.verify(known, database)).key_id == key_id
    dead = Database("postgresql://postgres@127.0.0.1:1/none", make_secrets())
    try:
        await asyncio.sleep(0.6)  # the verified answer has aged out: the next call asks
        before = lookups
        for _ in range(5):
            assert (await verifier.verify(known, dead)).key_id == key_id
        assert lookups - before == 1  # one failed try, then served from memory
        await asyncio.sleep(0.6)
        assert (await verifier.verify(known, dead)).key_id == key_id
        assert lookups - before == 2  # the window passed: the database is tried again
    finally:
        await dead.dispose()


async def test_replicas_registering_the_bootstrap_key_at_once_all_succeed(
    database: Database,
) -> None:
    """Several replicas start together and each registers the bootstrap key on first use:
    one row, one audit event, and no request fails on the race."""
    bootstrap = "hk_race-" + uuid.uuid4().hex
    verifiers = [KeyVerifier(PEPPER, cache_s=10, bootstrap_key=bootstrap) for _ in range(6)]
    callers = await asyncio.gather(*(v.verify(bootstrap, database) for v in verifiers))
    assert len({c.key_id for c in callers}) == 1
    async with database.session() as session:
        rows = (
            await session.scalars(
                select(ApiKey).where(ApiKey.key_hash == hash_key(PEPPER, bootstrap))
            )
        ).all()
        events = (
            await session.scalars(select(AuditEvent).where(AuditEvent.target == str(rows[0].id)))
        ).all()
    assert len(rows) == 1 and len(events) == 1


async def test_a_client_with_histories_but_no_key_is_not_called_new(pg_url: str) -> None:
    """Users stored for a client before its first key (`db migrate-v1 --client`): that key
    reaches them, so `keys create` must not say the client is new (a mistake)."""
    from serve_app.users import store_result
    from tests.integration.test_users_api import result

    client = f"imported-{uuid.uuid4().hex[:8]}"
    database = Database(pg_url, make_secrets())
    try:
        await store_result(database, client=client, user_id="42", text="ciao", result=result())
    finally:
        await database.dispose()
    created = run_cli(["keys", "create", "--client", client, "--name", "first"], pg_url)
    assert created.returncode == 0, created.stderr
    assert "new client" not in created.stderr
    fresh = run_cli(["keys", "create", "--client", client + "-x", "--name", "first"], pg_url)
    assert fresh.returncode == 0 and "new client" in fresh.stderr
