"""`happykube keys ...` and `happykube audit`: the operator's commands, never HTTP routes.

They read the same environment as the API (`DATABASE_URL` and the storage secrets, see
db/settings.py; `HAPPYKUBE_API_KEY_PEPPER`, see serve_app/config.py). A new key is printed
once, on stdout alone, so `KEY=$(happykube keys create ...)` captures it; everything else
goes to stderr. Every creation and revocation lands in the audit trail.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

if TYPE_CHECKING:
    from db.session import Database

T = TypeVar("T")

keys_app = typer.Typer(
    help="API keys of clients: create (shown once), list, revoke.", no_args_is_help=True
)


def _with_database(work: Callable[[Database], Awaitable[T]]) -> T:
    from db.session import Database
    from db.settings import SettingsError, load_settings

    try:
        settings = load_settings()
        settings.secrets()  # keys that do not parse are a configuration error, said in one line
    except SettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

    async def run() -> T:
        database = Database.from_settings(settings)
        try:
            return await work(database)
        finally:
            await database.dispose()

    return asyncio.run(run())


def _pepper() -> bytes:
    from pydantic import ValidationError

    from serve_app.config import ProtectionSettings

    try:
        return ProtectionSettings().pepper()
    except ValidationError as exc:
        reasons = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        typer.echo(f"error: {reasons}", err=True)
        raise typer.Exit(2) from None


@keys_app.command("create")
def create(
    client: str = typer.Option(
        ...,
        help="The client the key acts for, e.g. telegram-bot; it owns the histories the key "
        "stores, and any of its keys reaches them (rotate: a new key, then revoke the old).",
    ),
    name: str = typer.Option(..., help="This key among the client's, e.g. bot-2026-12."),
    scopes: Annotated[
        list[str] | None,
        typer.Option(
            help="emotion:write (default), history:read, history:write, admin; "
            "repeat the option or comma-separate."
        ),
    ] = None,
    rate_limit: int | None = typer.Option(
        None, min=1, help="Requests per minute for this key (default: the deployment's)."
    ),
) -> None:
    """Create a key and print it once; only its hash and visible prefix are stored."""
    from sqlalchemy import func, select

    from db.audit import cli_actor
    from db.models import ApiKey, User, parse_client
    from serve_app.keys import create_key, parse_scopes

    try:
        parse_client(client)
        chosen = parse_scopes(scopes or ["emotion:write"])
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    pepper = _pepper()

    async def work(database: Database) -> tuple[str, str, str, int]:
        async with database.session() as session:
            key, row = await create_key(
                session,
                pepper=pepper,
                client=client,
                name=name,
                scopes=chosen,
                actor=cli_actor(),
                rate_limit=rate_limit,
            )
            keys = await session.scalar(
                select(func.count()).where(ApiKey.client == client, ApiKey.id != row.id)
            )  # or histories already stored for it (`db migrate-v1 --client`)
            users = await session.scalar(select(func.count()).where(User.client == client))
            return key, str(row.id), row.prefix, int(keys or 0) + int(users or 0)

    key, key_id, prefix, others = _with_database(work)
    if not others:  # a typo here starts an empty history: say so before the old key goes
        typer.echo(
            f"note: {client} is a new client; its keys reach no history stored with another "
            "client's keys (to rotate a key, use the client `happykube keys list` shows for it)",
            err=True,
        )
    typer.echo(
        f"created key {key_id} of client {client} ({prefix}..., {', '.join(chosen)}); "
        "it is shown once:",
        err=True,
    )
    typer.echo(key)


@keys_app.command("list")
def list_command(
    active: bool = typer.Option(False, "--active", help="Leave revoked keys out."),
    client: str | None = typer.Option(None, help="Only this client's keys."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """Every key: id, visible prefix, client, name, scopes, created, last used, revoked."""
    from serve_app.keys import list_keys

    async def work(database: Database) -> list[dict[str, object]]:
        async with database.session() as session:
            rows = await list_keys(session, include_revoked=not active, client=client)
            return [
                {
                    "id": str(row.id),
                    "prefix": row.prefix,
                    "client": row.client,
                    "name": row.name,
                    "scopes": list(row.scopes),
                    "rate_limit": row.rate_limit,
                    "created_at": _iso(row.created_at),
                    "last_used_at": _iso(row.last_used_at),
                    "revoked_at": _iso(row.revoked_at),
                }
                for row in rows
            ]

    for item in _with_database(work):
        if as_json:
            typer.echo(json.dumps(item))
        else:
            state = f"revoked {item['revoked_at']}" if item["revoked_at"] else "active"
            typer.echo(
                f"{item['id']}  {item['prefix']}...  {item['client']}  {item['name']}"
                f"  {json.dumps(item['scopes'])}"
                f"  last used {item['last_used_at'] or '-'}  {state}"
            )


@keys_app.command("revoke")
def revoke(key: str = typer.Argument(..., help="The key's id or its visible prefix.")) -> None:
    """Revoke a key; requests with it get 401 within the API's key cache time."""
    from db.audit import cli_actor
    from serve_app.keys import revoke_key

    async def work(database: Database) -> str | None:
        async with database.session() as session:
            row = await revoke_key(session, key=key, actor=cli_actor())
            return str(row.id) if row else None

    revoked = _with_database(work)
    if revoked is None:
        typer.echo("error: no single key has that id or prefix", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {revoked}")


def audit_command(
    action: str | None = typer.Option(
        None, help="key.created, key.revoked, user.exported or user.erased."
    ),
    actor: str | None = typer.Option(None, help="An API key id, or cli:<user>."),
    target: str | None = typer.Option(None, help="An API key id or a user's row id."),
    days: int = typer.Option(30, min=1, help="How far back to look."),
    limit: int = typer.Option(100, min=1, max=10_000),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """The audit trail, newest first: who did what to which object, and when."""
    from db.audit import query

    since = datetime.now(UTC) - timedelta(days=days)

    async def work(database: Database) -> list[dict[str, object]]:
        async with database.session() as session:
            events = await query(
                session, action=action, actor=actor, target=target, since=since, limit=limit
            )
            return [
                {
                    "at": _iso(event.created_at),
                    "actor": event.actor,
                    "action": event.action,
                    "target": event.target,
                    "details": event.details,
                }
                for event in events
            ]

    for item in _with_database(work):
        if as_json:
            typer.echo(json.dumps(item))
        else:
            typer.echo(
                f"{item['at']}  {item['actor']}  {item['action']}  {item['target'] or '-'}"
                f"  {json.dumps(item['details'])}"
            )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None
