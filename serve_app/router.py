"""LanguageRouter: detect each text's language, then call the right model deployments.

Italian text goes to the Italian emotion and sentiment deployments concurrently; English
text to the English emotion deployment. English sentiment comes from an English sentiment
deployment when one is configured, otherwise from the emotion scores through
`EN_SENTIMENT_OF_EMOTION`:

    joy -> positive;  anger, disgust, fear, sadness -> negative;  neutral, surprise -> neutral

Each sentiment's score is the sum of its emotions' probabilities and the sentiment is the
highest of the three. Surprise is neutral because it is as often good news as bad.

Detection: lingua, built once per replica over a small candidate set (the supported
languages plus their common neighbours, so Spanish is refused as Spanish rather than read as
Italian; a small set also keeps memory near 0.1 GB and short English readable). When lingua
is unsure (top confidence below `min_confidence`) or finds nothing (emoji-only text), the
request's language hint is used, then the likeliest supported language, then the configured
fallback. Only a text confidently detected as an unsupported language is answered
`unsupported_language`, naming the language: a short English "I am sad" that lingua leans
Portuguese on is still read as English.
"""

from __future__ import annotations

import asyncio
import functools
from collections import defaultdict, deque
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

from serve_app.cache import cache_from_settings
from serve_app.config import LanguageArgs, ModelSpec, ProtectionArgs, ProtectionSettings
from serve_app.errors import ModelUnavailableError, UnsupportedLanguageError, error_body
from serve_app.observability import get_logger
from serve_app.production import ROUTER_SECRETS, check_production
from serve_app.registry import EMOTION_MODEL, SENTIMENT_MODEL, SENTIMENT_OF_EMOTION
from serve_app.schemas import EmotionResult, ErrorBody, Language, Sentiment

log = get_logger(__name__)

EN_SENTIMENT_OF_EMOTION = SENTIMENT_OF_EMOTION

Item = EmotionResult | ErrorBody  # one text's answer: its result, or its own error


class LanguageDetector:
    """lingua over a fixed candidate set, with the router's fallback rules."""

    def __init__(self, args: LanguageArgs) -> None:
        from lingua import IsoCode639_1, LanguageDetectorBuilder
        from lingua import Language as LinguaLanguage

        langs = [
            LinguaLanguage.from_iso_code_639_1(getattr(IsoCode639_1, code.upper()))
            for code in args.candidates
        ]
        self._detector = (
            LanguageDetectorBuilder.from_languages(*langs).with_preloaded_language_models().build()
        )
        self._args = args

    def detect(self, text: str, hint: Language | None) -> tuple[Language | str, float]:
        """Return (language, confidence); an unsupported language comes back as its code.

        Confident (top value >= `min_confidence`): the top language, supported or not.
        Unsure: the request's hint; else the likeliest supported language; else, when
        lingua has nothing at all (emoji, digits), the configured fallback.
        """
        values = self._detector.compute_language_confidence_values(text)
        supported = {str(lang) for lang in self._args.supported}
        ranked = [(v.language.iso_code_639_1.name.lower(), float(v.value)) for v in values]
        if ranked and ranked[0][1] >= self._args.min_confidence:
            code, confidence = ranked[0]
            return (Language(code) if code in supported else code), confidence
        if hint is not None:
            return hint, dict(ranked).get(str(hint), 0.0)
        for code, confidence in ranked:
            if code in supported and confidence > 0.0:
                return Language(code), confidence
        return self._args.fallback, 0.0


@serve.deployment(
    max_ongoing_requests=256,
    ray_actor_options={"num_cpus": 0.1},
)
class LanguageRouter:
    def __init__(
        self,
        languages: LanguageArgs,
        specs: dict[str, ModelSpec],
        models: dict[str, DeploymentHandle[Any]],
        protection: ProtectionArgs | None = None,
    ) -> None:
        self.detector = LanguageDetector(languages)
        protection = protection or ProtectionArgs()
        if protection.cache_enabled:
            check_production(secrets=ROUTER_SECRETS)
        self.cache = (
            # This replica's settings, read once, here.
            cache_from_settings(ProtectionSettings(), protection)
            if protection.cache_enabled
            else None
        )
        self.specs = specs
        self.models = models
        self._described: dict[str, dict[str, Any]] = {}
        # Texts per `analyze` call, recent first-in: how well the ingress gathers requests.
        self.recent_calls: deque[int] = deque(maxlen=256)
        self.calls_total = 0

    def call_stats(self) -> dict[str, Any]:
        """The number of texts in each recent `analyze` call, and how many calls ever: a
        caller compares totals, since the recent window stops growing once full."""
        return {"recent_calls": list(self.recent_calls), "calls_total": self.calls_total}

    async def ready(self, timeout_s: float = 2.0) -> dict[str, bool]:
        """Ask every model deployment to describe itself; True for those that answered."""

        async def one(name: str) -> bool:
            try:
                self._described[name] = await asyncio.wait_for(
                    self.models[name].describe.remote(), timeout_s
                )
            except Exception:  # a model that cannot answer is simply not ready
                return False
            return True

        names = sorted(self.models)
        answers = await asyncio.gather(*(one(name) for name in names))
        return dict(zip(names, answers, strict=True))

    async def _revision(self, name: str) -> str:
        if name not in self._described:
            self._described[name] = await self.models[name].describe.remote()
        return str(self._described[name]["revision"])

    async def _scores(self, name: str, texts: list[str], client: str) -> list[dict[str, float]]:
        """One {label: probability} per text; `client`'s cached texts never reach the model."""
        try:
            revision = await self._revision(name)
        except Exception as exc:
            log.warning("model_call_failed", model=name, error=type(exc).__name__)
            raise ModelUnavailableError(f"model {name} is unavailable", model=name) from exc
        if self.cache is None:
            return await self._run(name, texts)
        compute = functools.partial(self._run, name)
        return await self.cache.through(name, revision, texts, compute, client=client)

    async def _run(self, name: str, texts: list[str]) -> list[dict[str, float]]:
        """Call one model deployment for `texts`; one {label: probability} per text."""
        try:
            rows: list[list[float]] = await self.models[name].classify.remote(texts)
        except Exception as exc:
            log.warning("model_call_failed", model=name, error=type(exc).__name__)
            raise ModelUnavailableError(f"model {name} is unavailable", model=name) from exc
        labels = self.specs[name].labels
        return [dict(zip(labels, row, strict=True)) for row in rows]

    async def analyze(
        self, texts: list[str], hint: Language | None = None, *, client: str
    ) -> list[Item]:
        """Analyse normalised texts of `client` (who owns the cache entries they make); answer
        one item per text, in order: a result, or the error of that text alone (an
        unsupported language, a model that did not answer)."""
        self.recent_calls.append(len(texts))
        self.calls_total += 1
        items: list[Item | None] = [None] * len(texts)
        by_lang: dict[Language, list[int]] = defaultdict(list)
        confidence: dict[int, float] = {}
        for i, text in enumerate(texts):
            lang, conf = self.detector.detect(text, hint)
            confidence[i] = conf
            if isinstance(lang, Language):
                by_lang[lang].append(i)
            else:
                items[i] = error_body(
                    UnsupportedLanguageError(
                        f"language {lang!r} is not supported; supported: it, en",
                        detected=lang,
                        confidence=round(conf, 4),
                    )
                )
        groups = list(by_lang.items())
        log.info(
            "texts_routed",
            n_texts=len(texts),  # `texts` is a redacted field name
            languages={str(lang): len(idx) for lang, idx in groups},
            unsupported=len(texts) - sum(len(idx) for idx in by_lang.values()),
        )
        answers = await asyncio.gather(
            *(
                self._analyze_language(lang, [texts[i] for i in idx], client)
                for lang, idx in groups
            ),
            return_exceptions=True,
        )
        for (lang, idx), answer in zip(groups, answers, strict=True):
            for pos, i in enumerate(idx):
                if isinstance(answer, BaseException):
                    items[i] = error_body(answer)
                else:
                    items[i] = EmotionResult(
                        **answer[pos],
                        language=lang,
                        language_confidence=round(confidence[i], 4),
                    )
        return [item for item in items if item is not None]

    async def _analyze_language(
        self, lang: Language, texts: list[str], client: str
    ) -> list[dict[str, Any]]:
        emotion_model = EMOTION_MODEL[lang]
        sentiment_model = SENTIMENT_MODEL[lang] if SENTIMENT_MODEL[lang] in self.models else None
        calls = [self._scores(emotion_model, texts, client)]
        if sentiment_model:
            calls.append(self._scores(sentiment_model, texts, client))
        scored = await asyncio.gather(*calls)
        used = [emotion_model] + ([sentiment_model] if sentiment_model else [])
        refs = [{"name": name, "revision": await self._revision(name)} for name in used]
        out: list[dict[str, Any]] = []
        for pos, emotions in enumerate(scored[0]):
            sentiments = scored[1][pos] if sentiment_model else _derived_sentiment(emotions)
            out.append(
                {
                    "emotion": max(emotions, key=emotions.__getitem__),
                    "emotion_scores": _rounded(emotions),
                    "sentiment": max(sentiments, key=sentiments.__getitem__),
                    "sentiment_scores": _rounded(sentiments),
                    "models": refs,
                }
            )
        return out


def _derived_sentiment(emotions: dict[str, float]) -> dict[str, float]:
    sums = dict.fromkeys((s.value for s in Sentiment), 0.0)
    for label, p in emotions.items():
        sums[EN_SENTIMENT_OF_EMOTION[label].value] += p
    return sums


def _rounded(scores: dict[str, float]) -> dict[str, float]:
    return {label: round(float(p), 6) for label, p in scores.items()}
