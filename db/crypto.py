"""Field encryption (AES-256-GCM under a key ring) and the keyed user hash.

Why keyed: a Telegram id has at most 52 significant bits, so `SHA-256("telegram:" + id)` can be
reversed by trying every id in hours. `HMAC-SHA256(pepper, ...)` cannot be tried without the
pepper, which lives only in the environment (or the quick-start key file), never in the database.

Why per client: the stored hash is `client_user_hash`, the id's keyed hash wrapped once more
with the client that owns the history, so one person stored by two clients is two unrelated
hashes. The wrap takes the old hash rather than the id because revision 0003 had to move
rows that kept only the old hash (db/migrations/versions/0003_clients.py): new rows and
migrated rows are the same function of (client, id).

Why associated data: each ciphertext is bound to its row (user id and record id). A ciphertext
copied into another row, or another user's row, fails authentication instead of decrypting.
What a record seals, and the blob's format inside, is in `db.sealed`.

Stored form of one value: `nonce (12 random bytes) || ciphertext || tag (16 bytes)`, next to the
`key_id` that encrypted it, so old rows stay readable while `rotate-keys` moves them forward.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
_TAG_BYTES = 16
# Bumping this makes every sealed record undecryptable: it is part of the associated data.
# v1 (`.../emotion_records.text/v1`) sealed the text alone; `db.rotation` still reads it.
_AAD_CONTEXT = b"happykube/emotion_records.sealed/v2"


class CryptoError(Exception):
    """Base of the errors raised when a stored value cannot be read back."""


class UnknownKeyError(CryptoError):
    """Raised when a row names a key id that the configured key ring does not hold."""


class DecryptionError(CryptoError):
    """Raised when a ciphertext fails authentication: wrong key, tampering, or a moved row."""


class KeyRingError(ValueError):
    """Raised when `HAPPYKUBE_ENCRYPTION_KEYS` or the active key id is malformed."""


def user_hash(pepper: bytes, external_id: str, *, namespace: str = "telegram") -> str:
    """Return the hex HMAC-SHA256 of `namespace:external_id` under the pepper."""
    if len(pepper) < 16:
        raise KeyRingError("the user pepper must be at least 16 bytes")
    message = f"{namespace}:{external_id}".encode()
    return hmac.new(pepper, message, hashlib.sha256).hexdigest()


def wrap_user_hash(pepper: bytes, client: str, inner_hash: str) -> str:
    """Return the hex HMAC-SHA256 binding `inner_hash` (a `user_hash`) to `client`."""
    message = f"client\x1f{client}\x1f{inner_hash}".encode()
    return hmac.new(pepper, message, hashlib.sha256).hexdigest()


def client_user_hash(
    pepper: bytes, client: str, external_id: str, *, namespace: str = "telegram"
) -> str:
    """The stored hash of `external_id` in `client`'s histories (see the module docstring)."""
    return wrap_user_hash(pepper, client, user_hash(pepper, external_id, namespace=namespace))


def keyed_uuid(pepper: bytes, *parts: str) -> uuid.UUID:
    """Return a UUID derived from `parts` under the pepper, for idempotent imports.

    Keyed for the same reason as `user_hash`: the parts include message text, and an unkeyed
    digest of a short message could be confirmed by guessing.
    """
    digest = hmac.new(pepper, "\x1f".join(parts).encode(), hashlib.sha256).digest()
    return uuid.UUID(bytes=digest[:16], version=4)


def associated_data(user_id: uuid.UUID, record_id: uuid.UUID) -> bytes:
    """Bind a sealed record to one row of one user."""
    return _AAD_CONTEXT + b"|" + user_id.bytes + record_id.bytes


def generate_key() -> bytes:
    """Return a fresh random 256-bit key."""
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def encode_key(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


def parse_keys(spec: str) -> dict[str, bytes]:
    """Parse `k1:<base64 32 bytes>,k2:<base64 32 bytes>` into a key-id-to-key mapping."""
    keys: dict[str, bytes] = {}
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        key_id, sep, encoded = item.partition(":")
        key_id = key_id.strip()
        if not sep or not key_id or len(key_id) > 32:
            raise KeyRingError("each key must be written `id:<base64 key>` with a short id")
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise KeyRingError(f"key {key_id!r} is not valid base64") from exc
        if len(key) != KEY_BYTES:
            raise KeyRingError(f"key {key_id!r} must decode to {KEY_BYTES} bytes, not {len(key)}")
        if key_id in keys:
            raise KeyRingError(f"key id {key_id!r} appears twice")
        keys[key_id] = key
    if not keys:
        raise KeyRingError("the key ring is empty")
    return keys


@dataclass(frozen=True)
class KeyRing:
    """Every key that may have encrypted a stored value, and the one new values use."""

    keys: Mapping[str, bytes] = field(repr=False)  # the raw keys: never printed
    active_id: str
    _ciphers: dict[str, AESGCM] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.active_id not in self.keys:
            raise KeyRingError(f"active key id {self.active_id!r} is not in the key ring")
        for key_id, key in self.keys.items():
            if len(key) != KEY_BYTES:
                raise KeyRingError(f"key {key_id!r} must be {KEY_BYTES} bytes")
        ciphers = {key_id: AESGCM(key) for key_id, key in self.keys.items()}
        object.__setattr__(self, "_ciphers", ciphers)

    def encrypt(self, plaintext: str, *, aad: bytes) -> tuple[bytes, str]:
        """Encrypt under the active key; return the stored bytes and the key id used."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self.active_id].encrypt(nonce, plaintext.encode("utf-8"), aad)
        return nonce + sealed, self.active_id

    def decrypt(self, stored: bytes, *, key_id: str, aad: bytes) -> str:
        """Decrypt a value written by `encrypt`; raise a `CryptoError` when it cannot be."""
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise UnknownKeyError(f"no key {key_id!r} in the configured key ring")
        if len(stored) < NONCE_BYTES + _TAG_BYTES:
            raise DecryptionError("stored ciphertext is truncated")
        try:
            plaintext = cipher.decrypt(stored[:NONCE_BYTES], stored[NONCE_BYTES:], aad)
        except InvalidTag as exc:
            raise DecryptionError(
                f"ciphertext failed authentication under key {key_id!r}: "
                "wrong key, tampered value, or value moved from another row"
            ) from exc
        return plaintext.decode("utf-8")
