"""PNG curves for `verl-maxpo report`: one figure per metric, one line per run, seed groups as mean ± SE bands.

Uses matplotlib's object API with the Agg canvas (no pyplot), so importing this never changes the caller's
backend or global figure state.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

_COLORS = [
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]


@dataclass
class Curve:
    """One line: `steps` (S,), `values` (S,) and, for a seed group, the standard error `se` (S,) drawn as a band."""

    label: str
    steps: np.ndarray
    values: np.ndarray
    se: np.ndarray | None = None
    color_index: int = 0


def color(index: int) -> str:
    """The color of the run or group at `index`, the same in every figure."""
    return _COLORS[index % len(_COLORS)]


# Beyond this, matplotlib's axis margins and ticks overflow to inf (scores near ±1e308): plot in units of a power of 10.
_PLOTTABLE = 1e100


def _y_unit(curves: Sequence[Curve]) -> float:
    top = max((float(np.nanmax(np.abs(c.values), initial=0.0)) for c in curves), default=0.0)
    return 10.0 ** math.floor(math.log10(top)) if math.isfinite(top) and top > _PLOTTABLE else 1.0


def _draw(ax, curves: Sequence[Curve]) -> str:
    """Draw the curves; returns the y unit's label suffix ("" or " (× 1e+307)")."""
    unit = _y_unit(curves)
    for curve in curves:
        c = color(curve.color_index)
        marker = "o" if curve.steps.size <= 30 else None
        values = curve.values / unit
        ax.plot(curve.steps, values, color=c, marker=marker, markersize=3, linewidth=1.6, label=curve.label)
        if curve.se is not None:
            se = curve.se / unit
            ax.fill_between(curve.steps, values - se, values + se, color=c, alpha=0.2)
    ax.grid(True, alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are integers: no 1.5 on a 3-step run
    return "" if unit == 1.0 else f" (× {unit:.0e})"


def _wrapped(title: str, width: int) -> str:
    return "\n".join(textwrap.fill(line, width) for line in title.split("\n"))


def plot_metric(path: Path, metric: str, curves: Sequence[Curve], ylabel: str, title: str) -> Path:
    """Write one PNG of `metric` against step, one line per curve; returns the path."""
    fig = Figure(figsize=(6.4, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    unit = _draw(ax, curves)
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel + unit)
    ax.set_title(_wrapped(title, 64), fontsize=10)  # wrapped: a long setting line would run off the figure
    if curves:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_grid(path: Path, panels: Sequence[tuple[str, Sequence[Curve]]], title: str) -> Path:
    """Write a grid of small plots (one per metric name in `panels`), sharing one legend; returns the path."""
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows + 0.6), dpi=100)
    FigureCanvasAgg(fig)
    handles: dict[str, object] = {}
    for i, (name, curves) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        unit = _draw(ax, curves)
        ax.set_title(name + unit, fontsize=9)
        ax.set_xlabel("training step", fontsize=8)
        ax.tick_params(labelsize=7)
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    fig.suptitle(_wrapped(title, 44 * cols), fontsize=11)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(4, max(1, len(handles))), fontsize=8)
    fig.tight_layout(rect=(0, 0.06 + 0.02 * ((len(handles) - 1) // 4), 1, 1))
    fig.savefig(path)
    return path
