"""Pictures of an anomaly in its context: a terminal chart (plotext) and a PNG (matplotlib, Agg).

Both draw the same things: the observed series (metric points), the expected value and normal band
where the detector published them (on anomalies: a band is only on the wire for flagged windows),
every flagged point of the series, and the anomaly being looked at, highlighted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from patrol.records import Anomaly, MetricPoint


@dataclass
class ChartData:
    """What to draw: one series around one anomaly.

    Attributes
    ----------
    focus : Anomaly
        The anomaly being shown.
    points : list of MetricPoint
        The series' points in the window, any order.
    anomalies : list of Anomaly
        Anomalies of the same series in the window (the focus included or not).
    """

    focus: Anomaly
    points: list[MetricPoint] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)

    def __post_init__(self) -> None:
        by_id = {a.id: a for a in self.anomalies if a.series == self.focus.series}
        by_id[self.focus.id] = self.focus
        self.anomalies = sorted(by_id.values(), key=lambda a: a.window_start)
        self.points = sorted((p for p in self.points if p.series == self.focus.series), key=lambda p: p.window_start)

    @property
    def series(self) -> str:
        return self.focus.series

    def minutes(self, t: datetime) -> float:
        """Minutes from the focus anomaly's window start (the terminal chart's x axis)."""
        return (t - self.focus.window_start).total_seconds() / 60.0

    def observed(self) -> tuple[list[datetime], list[float]]:
        """Observed values: metric points, plus flagged windows the metrics topic no longer has."""
        seen = {p.window_start: p.value for p in self.points}
        for a in self.anomalies:
            seen.setdefault(a.window_start, a.observed)
        ts = sorted(seen)
        return ts, [seen[t] for t in ts]


def terminal_chart(data: ChartData, width: int = 100, height: int = 22, color: bool = False) -> str:
    """The chart as text (plotext): x = minutes from the anomaly, band drawn as bars at flagged windows."""
    import plotext as plt

    f = plt.figure
    f.clear()
    f.plot_size(width, height)
    f.title(data.series)
    ts, ys = data.observed()
    if ts:
        obs = f.signal([data.minutes(t) for t in ts], ys)
        obs.lines()
        f.draw(obs)
    xs = [data.minutes(a.window_start) for a in data.anomalies]
    mid = [(a.lower + a.upper) / 2 for a in data.anomalies]
    half = [max(0.0, (a.upper - a.lower) / 2) for a in data.anomalies]
    f.draw(f.error(xs, mid, half))  # the normal band [lower, upper] of each flagged window
    f.draw(f.signal(xs, [a.expected for a in data.anomalies], marker="x"))
    f.draw(f.signal(xs, [a.observed for a in data.anomalies], marker="o"))
    focus = f.signal([0.0], [data.focus.observed], marker="@")
    f.draw(focus)
    f.label("minutes from anomaly", axis="x")
    # The key goes under the chart: plotext's in-canvas legend would cover the oldest points.
    key = "key: line observed   x expected   ┼ band [lower, upper]   o flagged   @ this anomaly"
    return f.build().string(colorless=not color) + "\n" + key.center(width).rstrip()


def png_chart(data: ChartData, path: str | Path, width_px: int = 1200, height_px: int = 500, dpi: int = 100) -> Path:
    """Write the chart as a PNG of exactly ``width_px`` x ``height_px`` pixels; returns the path.

    Uses the Agg backend (no display needed); no ``bbox_inches="tight"`` since that changes the size.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    try:
        ts, ys = data.observed()
        if ts:
            ax.plot(ts, ys, color="tab:blue", linewidth=1.4, marker=".", markersize=3, label="observed")
        an = data.anomalies
        at = [a.window_start for a in an]
        lower = [a.lower for a in an]
        upper = [a.upper for a in an]
        # Band only where published; vertical bars so separate flagged windows are not joined by a fake band.
        ax.vlines(at, lower, upper, color="tab:green", alpha=0.35, linewidth=8, label="normal band")
        ax.scatter(at, [a.expected for a in an], color="tab:green", marker="_", s=200, label="expected", zorder=3)
        ax.scatter(at, [a.observed for a in an], color="tab:red", s=30, label="flagged", zorder=4)
        f = data.focus
        ax.axvspan(f.window_start, f.window_end, color="tab:orange", alpha=0.25, label="this anomaly")
        ax.scatter([f.window_start], [f.observed], color="tab:red", edgecolor="black", s=90, zorder=5)
        ax.set_title(f"{data.series}\n{f.id}  score {f.score:.3f}  {f.severity.value}  {f.direction.value}", fontsize=10)
        ax.set_xlabel("window start (UTC)")
        ax.set_ylabel(f.metric)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        fig.autofmt_xdate()
        fig.savefig(path, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return path
