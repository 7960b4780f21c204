"""Clients own histories (issue 16), through the real app over real PostgreSQL and Redis.

Before: a stored user belonged to the API key that stored it, so rotating the Telegram bot's
key (create a new one, switch the bot, revoke the old one) left every history unreachable:
no report, no export, no erasure. Now a key belongs to a client and histories to the client.
"""

from __future__ import annotations

import httpx
from sqlalchemy import select

from db import audit
from db.crypto import user_hash
from db.models import User
from db.session import Database
from serve_app.auth import HEADER
from serve_app.config import ProtectionArgs
from serve_app.keys import EMOTION_WRITE, HISTORY_READ, HISTORY_WRITE, revoke_key
from tests.integration.app_env import ServedGraph, client_for, new_key, real_app, shared_link
from tests.integration.history_env import PEPPER

SCOPES = (EMOTION_WRITE, HISTORY_READ, HISTORY_WRITE)
BOT = "telegram-bot"


async def revoke(database: Database, key_id: str) -> None:
    async with database.session() as session:
        assert await revoke_key(session, key=key_id, actor="cli:test")


def assert_not_found(response: httpx.Response) -> None:
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "user_not_found"


async def test_rotating_a_clients_key_keeps_every_history(
    database: Database, served_graph: ServedGraph
) -> None:
    """Key A stores user 42; key B of the same client is made and A revoked: B reports,
    exports and erases user 42, A gets 401, and another client's key sees no user 42."""
    key_a, id_a = await new_key(database, *SCOPES, client=BOT)
    stranger, _ = await new_key(database, *SCOPES, client="another-client")
    args = ProtectionArgs(key_cache_s=0.0)  # the revocation bites on the next request
    async with (
        shared_link() as link,
        client_for(real_app(served_graph, database, link, args)) as http,
    ):
        a, other = {HEADER: key_a}, {HEADER: stranger}
        body = {"text": "oggi sono proprio felice", "user_id": "42"}
        stored = await http.post("/api/v1/emotion", json=body, headers=a)
        assert stored.status_code == 200 and stored.json()["stored"], stored.text

        key_b, id_b = await new_key(database, *SCOPES, client=BOT)
        await revoke(database, id_a)
        b = {HEADER: key_b}
        revoked = await http.get("/api/v1/users/42/report", headers=a)
        assert revoked.status_code == 401 and revoked.json()["error"]["code"] == "unauthorized"

        for response in (
            await http.get("/api/v1/users/42/report", headers=other),
            await http.get("/api/v1/users/42/export", headers=other),
            await http.delete("/api/v1/users/42", headers=other),
        ):
            assert_not_found(response)

        report = await http.get("/api/v1/users/42/report", headers=b)
        assert report.status_code == 200, report.text
        assert report.json()["total"] == 1
        exported = await http.get("/api/v1/users/42/export", headers=b)
        assert exported.status_code == 200, exported.text
        records = exported.json()["records"]
        assert [r["id"] for r in records] == [stored.json()["record_id"]]
        assert [r["text"] for r in records] == [body["text"]]
        assert (await http.delete("/api/v1/users/42", headers=b)).status_code == 204
        assert_not_found(await http.get("/api/v1/users/42/report", headers=b))

    async with database.session() as session:
        # The audit trail still names the key that acted, not only its client.
        events = await audit.query(session, actor=id_b)
    assert [e.action for e in events] == [audit.USER_ERASED, audit.USER_EXPORTED]


async def test_one_person_is_not_linkable_across_clients(
    database: Database, served_graph: ServedGraph
) -> None:
    """The same Telegram id stored by two clients gets two unrelated hashes, neither of
    them the plain keyed hash of the id."""
    first, _ = await new_key(database, *SCOPES, client="hash-client-a")
    second, _ = await new_key(database, *SCOPES, client="hash-client-b")
    async with shared_link() as link, client_for(real_app(served_graph, database, link)) as http:
        for key in (first, second):
            r = await http.patch(
                "/api/v1/users/5550042", json={"language": "it"}, headers={HEADER: key}
            )
            assert r.status_code == 200, r.text
    async with database.session() as session:
        rows = (
            await session.execute(
                select(User.client, User.user_hash).where(
                    User.client.in_(["hash-client-a", "hash-client-b"])
                )
            )
        ).all()
    hashes = {client: hashed for client, hashed in rows}
    assert set(hashes) == {"hash-client-a", "hash-client-b"}
    assert hashes["hash-client-a"] != hashes["hash-client-b"]
    assert user_hash(PEPPER.encode(), "5550042") not in hashes.values()
    assert hashes["hash-client-a"] == database.user_hash("5550042", client="hash-client-a")
