"""The /report chart: emotions per day as stacked bars, and the daily mood as a line.

Data preparation (`chart_data`) is kept apart from drawing (`draw`) so a test can check both
what is plotted and that the plot matches it. Drawing uses the object-oriented `Figure` API
rendered by Agg, never pyplot: no global figure registry, nothing shared between the
threads the bot renders charts in.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from matplotlib.figure import Figure

from contract import Emotion, Report

# Colour-blind-safe (Okabe-Ito) colours, fixed per emotion so charts compare across reports.
EMOTION_COLOURS: dict[str, str] = {
    Emotion.ANGER: "#D55E00",
    Emotion.DISGUST: "#009E73",
    Emotion.FEAR: "#CC79A7",
    Emotion.JOY: "#F0E442",
    Emotion.NEUTRAL: "#999999",
    Emotion.SADNESS: "#0072B2",
    Emotion.SURPRISE: "#E69F00",
}


@dataclass(frozen=True)
class ChartData:
    """What the chart shows: one value per day of the window, oldest first."""

    days: list[date]
    # Only emotions seen at least once in the window, in `Emotion` order.
    emotions: dict[str, list[int]]
    # (positive - negative) / messages that day, in [-1, 1]; NaN where there were none.
    mood: list[float]


def chart_data(report: Report) -> ChartData:
    """Turn the ingress's report into the series the chart draws."""
    days = [day.date for day in report.daily]
    emotions: dict[str, list[int]] = {}
    for emotion in Emotion:
        series = [day.emotions.get(emotion, 0) for day in report.daily]
        if any(series):
            emotions[emotion.value] = series
    mood = [
        (day.sentiment.get("positive", 0) - day.sentiment.get("negative", 0)) / day.total
        if day.total
        else math.nan
        for day in report.daily
    ]
    return ChartData(days=days, emotions=emotions, mood=mood)


def draw(data: ChartData, labels: Mapping[str, str]) -> Figure:
    """Draw the two panels; `labels` holds the translated titles and emotion names.

    Needed keys: each emotion's value, `emotions`, `mood`, `messages`.
    """
    figure = Figure(figsize=(8, 6), dpi=100, layout="constrained")
    bars_ax, mood_ax = figure.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    xs = list(range(len(data.days)))
    bottom = [0] * len(xs)
    for emotion, counts in data.emotions.items():
        bars_ax.bar(
            xs, counts, bottom=bottom, color=EMOTION_COLOURS[emotion], label=labels[emotion]
        )
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    bars_ax.set_title(labels["emotions"])
    bars_ax.set_ylabel(labels["messages"])
    bars_ax.yaxis.get_major_locator().set_params(integer=True)
    if data.emotions:
        bars_ax.legend(loc="upper left", fontsize="small", ncols=min(4, len(data.emotions)))

    mood_ax.plot(xs, data.mood, marker="o", color="#0072B2")
    mood_ax.axhline(0, color="#999999", linewidth=0.8)
    mood_ax.set_ylim(-1.1, 1.1)
    mood_ax.set_title(labels["mood"])
    step = max(1, math.ceil(len(xs) / 10))
    mood_ax.set_xticks(xs[::step], [d.strftime("%d/%m") for d in data.days[::step]])
    return figure


def render_png(figure: Figure) -> bytes:
    """Rasterise a figure to PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
