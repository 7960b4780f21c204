"""Secrets and environment of the history-database tests, shared by their modules.

The keys and pepper are random per test session and never written anywhere but the
environment of the subprocesses that need them.
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from db import migrations
from db.crypto import KeyRing
from db.settings import Secrets

ROOT = Path(__file__).resolve().parents[2]
ADMIN_URL = os.environ.get("HAPPYKUBE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
KEYS = {"k1": secrets.token_bytes(32), "k2": secrets.token_bytes(32)}
PEPPER = secrets.token_urlsafe(32)
CLI = [sys.executable, "-m", "serve_app.cli", "db"]


def text_v1(text: str, user_id: uuid.UUID, record_id: uuid.UUID) -> bytes:
    """`text` as revisions 0001-0002 stored it: AES-GCM under test key k1, the v1 associated
    data (context, user id, record id) and the nonce in front. Spelled out here, not taken
    from `db`, so a change to the product's sealing cannot change what the old rows were."""
    aad = b"happykube/emotion_records.text/v1|" + user_id.bytes + record_id.bytes
    nonce = os.urandom(12)
    return nonce + AESGCM(KEYS["k1"]).encrypt(nonce, text.encode(), aad)


def key_spec(*key_ids: str) -> str:
    """`HAPPYKUBE_ENCRYPTION_KEYS` holding the given test keys."""
    return ",".join(f"{k}:{base64.b64encode(KEYS[k]).decode()}" for k in key_ids)


def make_secrets(active: str = "k1", *key_ids: str) -> Secrets:
    """Secrets with the test pepper and a ring of `key_ids` (default: the active key only)."""
    ring = {k: KEYS[k] for k in (key_ids or (active,))}
    return Secrets(pepper=PEPPER.encode(), key_ring=KeyRing(ring, active))


def cli_env(url: str, *, keys: str, active: str) -> dict[str, str]:
    """The environment of a `happykube db ...` subprocess against `url`."""
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": url,
        "HAPPYKUBE_USER_PEPPER": PEPPER,
        "HAPPYKUBE_ENCRYPTION_KEYS": keys,
        "HAPPYKUBE_ACTIVE_KEY_ID": active,
    }


# Runs `happykube db ...` with a function that SIGKILLs the process on its (after+1)th call:
# a crash at a chosen point, with no chance to clean up, as in an OOM kill or a node loss.
_DYING = """
import os, signal, sys
from importlib import import_module
target, after, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
module, _, path = target.partition(":")
owner_path, _, name = path.rpartition(".")
owner = import_module(module)
for part in filter(None, owner_path.split(".")):
    owner = getattr(owner, part)
original, calls = getattr(owner, name), [0]
def dying(*a, **k):
    calls[0] += 1
    if calls[0] > after:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(*a, **k)
setattr(owner, name, dying)
from serve_app.cli import app
app(["db", *args])
"""


def run_killed(
    target: str, after: int, args: list[str], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run `happykube db <args>`, killed with SIGKILL on call `after + 1` of `target`."""
    command = [sys.executable, "-c", _DYING, target, str(after), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new, migrated PostgreSQL database for the block, dropped afterwards."""
    with empty_database() as url:
        migrations.upgrade(url)
        yield url


@contextmanager
def empty_database() -> Iterator[str]:
    """A new PostgreSQL database with no schema, dropped after the block."""
    name = f"happykube_test_{secrets.token_hex(6)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `happykube db <args>` to completion (blocking: tests wait for it on purpose)."""
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=300)
