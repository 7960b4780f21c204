"""What one record seals: its text and everything that describes the person's mood.

One AES-256-GCM blob per record (`emotion_records.sealed`, revision 0004) holds, as JSON: the
text, emotion, its score, sentiment, language, the model and its revision, and `meta` (the
language confidence, the sentiment score, the models used and the caller's request id). The
associated data (`db.crypto.associated_data`) binds the blob to its row (user id, record id)
under the context `happykube/emotion_records.sealed/v2`, so a database writer can neither edit
a label (the tag fails) nor move a valid blob to another row or user (the AAD differs).

In clear stay only what a report needs to find rows: `user_id`, `created_at` and `key_id`.
`created_at` is not authenticated: it says when someone wrote, not how they felt.

The JSON is padded with spaces to a multiple of `_PAD` bytes, so that the blob's length does not
tell a "joy" (3 letters) from a "surprise" (8) in otherwise equal records.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import Field, ValidationError

from contract import RecordContents
from db.crypto import DecryptionError, KeyRing, associated_data

_PAD = 64


class Contents(RecordContents):
    """The sealed part of a record, in clear: what an export shows, and `meta` (internal)."""

    meta: dict[str, Any] = Field(default_factory=dict)


def seal(
    ring: KeyRing, contents: Contents, *, user_id: uuid.UUID, record_id: uuid.UUID
) -> tuple[bytes, str]:
    """Encrypt `contents` under the active key; return the blob and the key id used."""
    plain = contents.model_dump_json()
    size = len(plain.encode("utf-8"))
    plain += " " * (-size % _PAD)  # JSON ignores trailing whitespace
    return ring.encrypt(plain, aad=associated_data(user_id, record_id))


def unseal(
    ring: KeyRing, blob: bytes | None, *, key_id: str, user_id: uuid.UUID, record_id: uuid.UUID
) -> Contents:
    """The contents of a blob written by `seal`; raises a `db.crypto.CryptoError` if it
    cannot be read (unknown key, tampered blob, blob of another row, or no blob: a record of
    revision 0004 that `happykube db upgrade` has not sealed yet)."""
    if blob is None:
        raise DecryptionError("record not sealed yet: run `happykube db upgrade`")
    plain = ring.decrypt(blob, key_id=key_id, aad=associated_data(user_id, record_id))
    try:
        return Contents.model_validate_json(plain)
    except ValidationError as exc:  # authentic but not ours: a bug, not an attack
        raise DecryptionError("sealed record holds no valid contents") from exc
