"""Field encryption, the keyed user hash, and the settings that guard the secrets."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import uuid
from pathlib import Path

import pytest

from db.crypto import (
    DecryptionError,
    KeyRing,
    KeyRingError,
    UnknownKeyError,
    associated_data,
    client_user_hash,
    generate_key,
    keyed_uuid,
    parse_keys,
    user_hash,
    wrap_user_hash,
)
from db.settings import LOCAL_KEY_FILE, DatabaseSettings, SettingsError, load_settings

USER, RECORD = uuid.uuid4(), uuid.uuid4()
AAD = associated_data(USER, RECORD)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings tests start from an empty storage environment, whatever the shell has."""
    for name in list(os.environ):
        if name == "DATABASE_URL" or name.startswith("HAPPYKUBE_"):
            monkeypatch.delenv(name)


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing({"k1": generate_key(), "k2": generate_key()}, "k1")


def test_round_trip_uses_a_fresh_nonce_each_time(ring: KeyRing) -> None:
    """The same text encrypts to different bytes and both decrypt back."""
    first, key_id = ring.encrypt("oggi sono felice 😀", aad=AAD)
    second, _ = ring.encrypt("oggi sono felice 😀", aad=AAD)
    assert key_id == "k1"
    assert first != second
    assert first[:12] != second[:12]
    assert ring.decrypt(first, key_id="k1", aad=AAD) == "oggi sono felice 😀"
    assert b"felice" not in first


def test_wrong_key_raises_a_clear_error(ring: KeyRing) -> None:
    stored, _ = ring.encrypt("segreto", aad=AAD)
    other = KeyRing({"k1": generate_key()}, "k1")
    with pytest.raises(DecryptionError, match="failed authentication under key 'k1'"):
        other.decrypt(stored, key_id="k1", aad=AAD)


@pytest.mark.parametrize("position", [0, 12, -1])
def test_tampered_ciphertext_is_refused(ring: KeyRing, position: int) -> None:
    """Flipping one bit of the nonce, the body or the tag fails authentication."""
    stored = bytearray(ring.encrypt("segreto", aad=AAD)[0])
    stored[position] ^= 0x01
    with pytest.raises(DecryptionError):
        ring.decrypt(bytes(stored), key_id="k1", aad=AAD)


def test_ciphertext_moved_to_another_row_does_not_decrypt(ring: KeyRing) -> None:
    stored, _ = ring.encrypt("segreto", aad=AAD)
    with pytest.raises(DecryptionError):
        ring.decrypt(stored, key_id="k1", aad=associated_data(USER, uuid.uuid4()))
    with pytest.raises(DecryptionError):
        ring.decrypt(stored, key_id="k1", aad=associated_data(uuid.uuid4(), RECORD))


def test_unknown_and_truncated_values_are_named(ring: KeyRing) -> None:
    stored, _ = ring.encrypt("segreto", aad=AAD)
    with pytest.raises(UnknownKeyError, match="'k9'"):
        ring.decrypt(stored, key_id="k9", aad=AAD)
    with pytest.raises(DecryptionError, match="truncated"):
        ring.decrypt(stored[:20], key_id="k1", aad=AAD)


def test_retired_key_still_decrypts_after_the_active_one_changes(ring: KeyRing) -> None:
    stored, _ = ring.encrypt("vecchio", aad=AAD)
    rotated = KeyRing(dict(ring.keys), "k2")
    assert rotated.encrypt("nuovo", aad=AAD)[1] == "k2"
    assert rotated.decrypt(stored, key_id="k1", aad=AAD) == "vecchio"


def test_parse_keys_accepts_the_documented_form_and_refuses_bad_keys() -> None:
    k1, k2 = generate_key(), generate_key()
    spec = f"k1:{base64.b64encode(k1).decode()}, k2:{base64.b64encode(k2).decode()}"
    assert parse_keys(spec) == {"k1": k1, "k2": k2}
    with pytest.raises(KeyRingError, match="32 bytes"):
        parse_keys(f"k1:{base64.b64encode(b'short').decode()}")
    with pytest.raises(KeyRingError, match="base64"):
        parse_keys("k1:not base64!")
    with pytest.raises(KeyRingError, match="twice"):
        parse_keys(f"k1:{base64.b64encode(k1).decode()},k1:{base64.b64encode(k2).decode()}")
    with pytest.raises(KeyRingError, match="not in the key ring"):
        KeyRing({"k1": k1}, "k2")


def test_user_hash_is_keyed() -> None:
    """Without the pepper the hash cannot be recomputed from a guessed Telegram id."""
    pepper = os.urandom(32)
    hashed = user_hash(pepper, "123456789")
    assert hashed == user_hash(pepper, "123456789")
    assert hashed != user_hash(os.urandom(32), "123456789")
    assert hashed != hashlib.sha256(b"telegram:123456789").hexdigest()
    assert "123456789" not in hashed
    assert len(hashed) == 64
    with pytest.raises(KeyRingError):
        user_hash(b"short", "1")


def test_client_user_hash_keeps_clients_apart_and_agrees_with_the_migration() -> None:
    """One person in two clients is two unrelated hashes; a new user's hash is the wrap of
    the old hash that revision 0003 computes for migrated rows."""
    pepper = os.urandom(32)
    bot, other = (client_user_hash(pepper, c, "123456789") for c in ("telegram-bot", "other"))
    assert bot != other
    assert user_hash(pepper, "123456789") not in (bot, other)
    assert bot == wrap_user_hash(pepper, "telegram-bot", user_hash(pepper, "123456789"))
    assert bot != client_user_hash(os.urandom(32), "telegram-bot", "123456789")
    assert len(bot) == 64
    with pytest.raises(KeyRingError):
        client_user_hash(b"short", "telegram-bot", "1")


def test_keyed_uuid_is_stable_and_keyed() -> None:
    pepper = os.urandom(32)
    assert keyed_uuid(pepper, "a", "b") == keyed_uuid(pepper, "a", "b")
    assert keyed_uuid(pepper, "a", "b") != keyed_uuid(pepper, "ab", "")
    assert keyed_uuid(pepper, "a", "b") != keyed_uuid(os.urandom(32), "a", "b")


def _real_keys() -> str:
    return f"p1:{base64.b64encode(generate_key()).decode()}"


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"HAPPYKUBE_USER_PEPPER": "changethis-changethis-changethis-1234"},
        {"HAPPYKUBE_ENCRYPTION_KEYS": f"p1:{base64.b64encode(bytes(32)).decode()}"},
        {"DATABASE_URL": "sqlite:///var/prod.sqlite3"},
    ],
    ids=["nothing", "placeholder-pepper", "zero-key", "sqlite"],
)
def test_production_refuses_missing_or_placeholder_secrets(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    good = {
        "HAPPYKUBE_ENVIRONMENT": "production",
        "DATABASE_URL": "postgresql://app@db:5432/happykube",
        "HAPPYKUBE_USER_PEPPER": base64.b64encode(os.urandom(32)).decode(),
        "HAPPYKUBE_ENCRYPTION_KEYS": _real_keys(),
    }
    for name, value in (good if env else {"HAPPYKUBE_ENVIRONMENT": "production"}).items():
        monkeypatch.setenv(name, value)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match="refusing to run in production") as caught:
        load_settings()
    for value in env.values():
        assert value not in str(caught.value), "a refusal must not echo the secret"


def test_production_accepts_real_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAPPYKUBE_ENVIRONMENT", "production")
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@db:5432/happykube")
    monkeypatch.setenv("HAPPYKUBE_USER_PEPPER", base64.b64encode(os.urandom(32)).decode())
    monkeypatch.setenv("HAPPYKUBE_ENCRYPTION_KEYS", _real_keys())
    settings = load_settings()
    assert settings.async_url().drivername == "postgresql+asyncpg"
    assert settings.secrets().key_ring.active_id == "p1"


def test_quick_start_generates_a_private_key_file_once(tmp_path: Path) -> None:
    """No secrets configured locally: a 0600 key file is created, then reused unchanged."""
    settings = DatabaseSettings(data_dir=tmp_path)
    first = settings.secrets()
    path = tmp_path / LOCAL_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = DatabaseSettings(data_dir=tmp_path).secrets()
    assert first.pepper == second.pepper
    assert dict(first.key_ring.keys) == dict(second.key_ring.keys)
    assert settings.async_url().drivername == "sqlite+aiosqlite"


def test_several_keys_need_an_active_id(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    keys = f"{_real_keys()},p2:{base64.b64encode(generate_key()).decode()}"
    settings = DatabaseSettings(
        data_dir=tmp_path, user_pepper="x" * 40, encryption_keys=keys, active_key_id=None
    )
    with pytest.raises(ValueError, match="HAPPYKUBE_ACTIVE_KEY_ID"):
        settings.secrets()
    assert not (tmp_path / LOCAL_KEY_FILE).exists(), "configured secrets need no key file"
