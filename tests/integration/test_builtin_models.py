"""The shipped built-in models load through the serving loader and get plain sentences right."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from serve_app.models import load_predictor
from serve_app.text import normalize
from training.evaluate import builtin_spec

MODELS = Path(__file__).resolve().parents[2] / "models"

# Unmistakable sentences, written here (not taken from any data set).
CLEAR: dict[str, list[tuple[str, str]]] = {
    "en_emotion": [
        ("I am so happy today, this is wonderful!", "joy"),
        ("I love you so much, thank you for everything!", "joy"),
        ("What a fantastic day, I'm thrilled!", "joy"),
        ("Yay, we won the game! Best day ever 😀", "joy"),
        ("I am furious, this is outrageous!", "anger"),
        ("Stop lying to me, I hate you!", "anger"),
        ("I'm so angry at you right now.", "anger"),
        ("This makes me mad, you idiots ruined everything.", "anger"),
        ("I feel so sad and lonely tonight.", "sadness"),
        ("My dog died yesterday and I can't stop crying.", "sadness"),
        ("I miss her so much, my heart is broken 😢", "sadness"),
        ("This is so depressing, I feel miserable.", "sadness"),
        ("I'm scared, someone is trying to break into my house.", "fear"),
        ("I am terrified of what will happen tomorrow.", "fear"),
        ("That horror movie frightened me so much.", "fear"),
        ("I'm afraid I will lose my job.", "fear"),
    ],
    "it_emotion": [
        ("Sono felicissimo, oggi è una giornata bellissima!", "joy"),
        ("Che bello rivederti, ti voglio bene!", "joy"),
        ("Evviva, abbiamo vinto! Che gioia 😂", "joy"),
        ("Grazie mille, sono davvero contenta!", "joy"),
        ("Sono furioso, è una vergogna!", "anger"),
        ("Che rabbia, mi avete rotto, ladri!", "anger"),
        ("Ti odio, sei un idiota!", "anger"),
        ("Basta! Questa cosa mi fa incazzare.", "anger"),
        ("Sono così triste, mi manchi tanto.", "sadness"),
        ("Il mio cane è morto e non smetto di piangere 😢", "sadness"),
        ("Che tristezza, ho il cuore spezzato.", "sadness"),
        ("Mi sento solo e pieno di malinconia.", "sadness"),
        ("Ho paura, qualcuno sta entrando in casa!", "fear"),
        ("Sono terrorizzata per l'esame di domani.", "fear"),
        ("Che paura quel film, mi ha spaventato.", "fear"),
        ("Temo che succederà qualcosa di terribile.", "fear"),
    ],
    "it_sentiment": [
        ("Che bella giornata, sono felicissimo!", "positive"),
        ("Ottimo servizio, grazie mille, lo consiglio a tutti!", "positive"),
        ("Bravissimi, un lavoro fantastico!", "positive"),
        ("Ti voglio bene, sei meravigliosa ❤️", "positive"),
        ("Adoro questa canzone, è stupenda!", "positive"),
        ("Che schifo, servizio pessimo e personale maleducato.", "negative"),
        ("Sono deluso, una vergogna totale.", "negative"),
        ("Governo di incompetenti, state rovinando il paese!", "negative"),
        ("Giornata orribile, va tutto male.", "negative"),
        ("Odio il traffico, sono stufo di questa città.", "negative"),
    ],
}


@pytest.mark.parametrize("name", sorted(CLEAR))
def test_shipped_model_loads_and_returns_probabilities(name: str) -> None:
    """Each artifact in models/ loads with the serving loader and answers one row per text."""
    predictor = load_predictor(name, builtin_spec(name, MODELS))
    texts = [normalize(text) for text, _ in CLEAR[name]]
    probs = predictor.predict(texts)
    assert probs.shape == (len(texts), len(predictor.labels))
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert len(predictor.revision) == 12


@pytest.mark.parametrize("name", sorted(CLEAR))
def test_clear_sentences_are_mostly_right(name: str) -> None:
    """At least 80% of unmistakable sentences get their obvious label."""
    predictor = load_predictor(name, builtin_spec(name, MODELS))
    texts = [normalize(text) for text, _ in CLEAR[name]]
    got = [predictor.labels[i] for i in predictor.predict(texts).argmax(axis=1)]
    wrong = [
        (text, want, have)
        for (text, want), have in zip(CLEAR[name], got, strict=True)
        if want != have
    ]
    assert len(wrong) <= 0.2 * len(texts), wrong


@pytest.mark.parametrize("name", sorted(CLEAR))
def test_two_loads_predict_identically(name: str) -> None:
    """Loading is deterministic: two loads give bit-identical probabilities."""
    texts = [normalize(text) for text, _ in CLEAR[name]]
    first = load_predictor(name, builtin_spec(name, MODELS)).predict(texts)
    second = load_predictor(name, builtin_spec(name, MODELS)).predict(texts)
    assert np.array_equal(first, second)
