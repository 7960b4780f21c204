"""A record's sealed blob: one AES-GCM value for the text and every label, bound to its row."""

from __future__ import annotations

import uuid

import pytest

from db.crypto import DecryptionError, KeyRing, generate_key
from db.sealed import Contents, seal, unseal

USER, RECORD = uuid.uuid4(), uuid.uuid4()


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing({"k1": generate_key()}, "k1")


def contents(emotion: str = "joy", sentiment: str | None = "positive") -> Contents:
    return Contents(
        text="oggi sono felice 😀",
        emotion=emotion,
        emotion_score=0.81,
        sentiment=sentiment,
        language="it",
        model="it_emotion",
        model_revision="rev-e",
        meta={"request_id": "req-1", "language_confidence": 0.97},
    )


def test_round_trip_and_nothing_readable_in_the_blob(ring: KeyRing) -> None:
    blob, key_id = seal(ring, contents(), user_id=USER, record_id=RECORD)
    assert unseal(ring, blob, key_id=key_id, user_id=USER, record_id=RECORD) == contents()
    for word in (b"joy", b"positive", b"it_emotion", b"req-1", b"felice"):
        assert word not in blob


def test_the_length_does_not_tell_one_label_from_another(ring: KeyRing) -> None:
    """'joy' and 'surprise', 'positive' and None: the same blob length (padded JSON)."""
    short, _ = seal(ring, contents("joy", None), user_id=USER, record_id=RECORD)
    long, _ = seal(ring, contents("surprise", "negative"), user_id=USER, record_id=RECORD)
    assert len(short) == len(long)


def test_a_blob_moved_to_another_row_or_user_fails(ring: KeyRing) -> None:
    blob, _ = seal(ring, contents(), user_id=USER, record_id=RECORD)
    for user_id, record_id in [(USER, uuid.uuid4()), (uuid.uuid4(), RECORD)]:
        with pytest.raises(DecryptionError, match="failed authentication"):
            unseal(ring, blob, key_id="k1", user_id=user_id, record_id=record_id)
