"""`happykube db ...`: schema migrations, key rotation and the v1 import.

Every command reads the same environment as the API (see `db.settings`) and works on
PostgreSQL and on the quick-start SQLite file alike. Progress goes to stderr; no command
ever prints a message text, a user id or a secret.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

if TYPE_CHECKING:
    from db.session import Database
    from db.settings import DatabaseSettings

app = typer.Typer(help="The encrypted mood history: schema, keys, imports.", no_args_is_help=True)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )


def _settings() -> DatabaseSettings:
    """The environment's settings, or a one-line refusal and exit status 2."""
    from db.settings import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _database() -> Database:
    """A `Database` on the environment's settings and keys, or a one-line refusal (status 2)."""
    from db.session import Database
    from db.settings import SettingsError

    try:
        return Database.from_settings(_settings())
    except SettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _pepper(settings: DatabaseSettings) -> bytes | None:
    """The user pepper for migrations that rewrite user hashes; None rather than a new one.

    Asked only when there are users to rewrite. A quick-start key file is used where it
    exists, never created here: hashes rewritten under a fresh random pepper would orphan
    every history, so the migration refuses instead.
    """
    from db.settings import LOCAL_KEY_FILE, SettingsError

    if settings.user_pepper is None and not (settings.data_dir / LOCAL_KEY_FILE).exists():
        return None
    try:
        return settings.secrets().pepper
    except SettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command("upgrade")
def upgrade(
    revision: str = typer.Argument("head", help="Target revision."),
    batch_size: int = typer.Option(500, min=1, help="Rows sealed per transaction."),
) -> None:
    """Create or update the schema (an empty database included) to `revision`.

    Rows from before revision 0004 are sealed on the way, under HAPPYKUBE_ACTIVE_KEY_ID, in
    batches: safe to kill and run again. An empty database needs no keys.
    """
    from db import migrations, rotation

    async def seal_rows() -> int:
        database = _database()
        try:
            with _progress() as progress:
                task = progress.add_task(
                    f"sealing under {database.key_ring.active_id}",
                    total=await rotation.unsealed(database),
                )
                return await rotation.seal_old_rows(
                    database, batch_size=batch_size, on_batch=lambda n: progress.advance(task, n)
                )
        except rotation.UnreadableRecordError as exc:
            raise migrations.MigrationRefusedError(
                f"{exc}; the batches before it are sealed and kept: add the key that wrote it "
                "to HAPPYKUBE_ENCRYPTION_KEYS and run `happykube db upgrade` again (a record no "
                "key opens can only be erased: DELETE it by id, then run it again)"
            ) from None
        finally:
            await database.dispose()

    settings = _settings()
    try:
        sealed = migrations.upgrade(
            settings.async_url(),
            revision,
            pepper=lambda: _pepper(settings),
            seal=lambda: asyncio.run(seal_rows()),
        )
    except migrations.MigrationRefusedError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"sealed {sealed} records; database at revision {revision}")


@app.command("downgrade")
def downgrade(revision: str = typer.Argument(..., help="Target revision, e.g. base.")) -> None:
    """Step the schema back to `revision` (`base` drops every table)."""
    from db import migrations

    try:
        migrations.downgrade(_settings().async_url(), revision)
    except migrations.MigrationRefusedError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"database at revision {revision}")


@app.command("rotate-keys")
def rotate_keys(
    batch_size: int = typer.Option(500, min=1, help="Rows re-encrypted per transaction."),
) -> None:
    """Re-encrypt every record under HAPPYKUBE_ACTIVE_KEY_ID; safe to kill and run again."""
    from db import rotation

    async def run() -> int:
        database = _database()
        try:
            if left := await rotation.unsealed(database):
                typer.echo(
                    f"error: {left} records are not sealed yet: run `happykube db upgrade` "
                    "first (it seals them under the active key)",
                    err=True,
                )
                raise typer.Exit(2)
            todo = await rotation.pending(database)
            with _progress() as progress:
                task = progress.add_task(
                    f"re-encrypting under {database.key_ring.active_id}", total=todo
                )
                return await rotation.rotate_keys(
                    database,
                    batch_size=batch_size,
                    on_batch=lambda n: progress.advance(task, n),
                )
        finally:
            await database.dispose()

    try:
        done = asyncio.run(run())
    except rotation.UnreadableRecordError as exc:
        typer.echo(
            f"error: {exc}; the batches before it are re-encrypted: keep the key that wrote it "
            "in HAPPYKUBE_ENCRYPTION_KEYS and run `happykube db rotate-keys` again",
            err=True,
        )
        raise typer.Exit(2) from None
    typer.echo(f"re-encrypted {done} records; none left under other keys")


@app.command("migrate-v1")
def migrate_v1(
    source_url: str | None = typer.Option(
        None, help="Database holding the v1 table (default: DATABASE_URL)."
    ),
    table: str = typer.Option("emotions", help="Name of the v1 table."),
    client: str = typer.Option("local", help="Client that will own the imported users."),
    source_timezone: str = typer.Option("UTC", help="Zone the v1 timestamps were written in."),
    batch_size: int = typer.Option(2000, min=1, help="Rows per transaction."),
) -> None:
    """Import the v1 plaintext table: hashed users, encrypted texts; idempotent, resumable."""
    from db import legacy
    from db.models import parse_client

    try:
        parse_client(client)
    except ValueError as exc:  # users no key could ever reach
        typer.echo(f"error: --client: {exc}", err=True)
        raise typer.Exit(2) from None

    async def run() -> legacy.ImportCounts:
        database = _database()
        source = source_url or database.url
        try:
            total = await legacy.count_v1(source, table_name=table)
            with _progress() as progress:
                task = progress.add_task("importing v1 rows", total=total)
                return await legacy.migrate_v1(
                    database,
                    source_url=source,
                    table_name=table,
                    client=client,
                    source_timezone=source_timezone,
                    batch_size=batch_size,
                    on_batch=lambda counts: progress.update(task, completed=counts.read),
                )
        finally:
            await database.dispose()

    started = time.perf_counter()
    counts = asyncio.run(run())
    elapsed = time.perf_counter() - started
    typer.echo(
        f"read {counts.read}, written {counts.written}, skipped {counts.skipped} "
        f"(already imported {counts.already_present}, invalid {counts.invalid}) "
        f"in {elapsed:.1f}s, {counts.read / max(elapsed, 1e-9):.0f} rows/s"
    )
