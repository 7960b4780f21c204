"""A small hand-written seed lexicon for the Italian emotion model, added as training rows.

Why: the only Italian emotion data we may train on (XED-IT) is projected movie subtitles with
no emoji and little chat vocabulary, so the model has never seen how people write sadness or
joy in a comment ("mi manchi", "😭", "che bello"). A few dozen seed expressions per emotion,
written from general knowledge of Italian, give those n-grams a weight. They were written
without looking at any evaluation set, and every entry is one unambiguous expression.
"""

from __future__ import annotations

from training.data import IT_EMOTION, Labelled

SEEDS: dict[str, tuple[str, ...]] = {
    "anger": (
        "che rabbia",
        "sono arrabbiato",
        "sono arrabbiata",
        "sono furioso",
        "sono furiosa",
        "mi fa incazzare",
        "vergogna",
        "vergognatevi",
        "schifo",
        "che schifo",
        "basta!",
        "odio",
        "ti odio",
        "maledetti",
        "ladri",
        "buffoni",
        "incompetenti",
        "indignato",
        "è inaccettabile",
        "mi avete rotto",
        "idioti",
        "😡",
        "🤬",
        "😠",
        "👎",
    ),
    "fear": (
        "ho paura",
        "che paura",
        "mi fa paura",
        "sono terrorizzato",
        "sono terrorizzata",
        "ansia",
        "ho l'ansia",
        "sono preoccupato",
        "sono preoccupata",
        "temo che",
        "spaventoso",
        "mi spaventa",
        "terrore",
        "panico",
        "angoscia",
        "brividi di paura",
        "😱",
        "😨",
        "😰",
        "😧",
    ),
    "joy": (
        "che bello",
        "bellissimo",
        "bellissima",
        "fantastico",
        "sono felice",
        "che gioia",
        "evviva",
        "grazie mille",
        "ti amo",
        "adoro",
        "stupendo",
        "meraviglioso",
        "bravissimo",
        "bravissima",
        "che emozione bellissima",
        "sono contento",
        "sono contenta",
        "top",
        "😂",
        "😍",
        "❤️",
        "❤",
        "😊",
        "🥰",
        "👏",
        "🎉",
        "♥️",
        "😀",
        "😄",
    ),
    "sadness": (
        "che tristezza",
        "sono triste",
        "mi manchi",
        "mi manca",
        "ci mancherai",
        "piango",
        "mi viene da piangere",
        "lacrime",
        "che dolore",
        "riposa in pace",
        "rip",
        "che peccato",
        "mi dispiace tanto",
        "sono distrutto",
        "sono distrutta",
        "malinconia",
        "cuore spezzato",
        "addio",
        "non ci sei più",
        "😢",
        "😭",
        "💔",
        "😞",
        "😔",
    ),
}


def seed_rows() -> Labelled:
    """The seed expressions as labelled rows, in a fixed order."""
    index = {name: i for i, name in enumerate(IT_EMOTION)}
    texts: list[str] = []
    y: list[int] = []
    for label, phrases in SEEDS.items():
        for phrase in phrases:
            texts.append(phrase)
            y.append(index[label])
    return Labelled(texts, y, IT_EMOTION)
