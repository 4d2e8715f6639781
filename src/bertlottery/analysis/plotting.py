"""Plot style and heatmaps shared by the figures: paper column / page widths, Okabe-Ito colours, the rcParams,
saving as PDF + PNG, annotated heatmaps and the layer x head panel with its MLP strip."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

SINGLE, DOUBLE = 3.3, 6.9  # inches: one paper column, the full page width
OKABE_ITO = {"black": "#000000", "orange": "#E69F00", "sky": "#56B4E9", "green": "#009E73",
             "yellow": "#F0E442", "blue": "#0072B2", "vermilion": "#D55E00", "purple": "#CC79A7", "grey": "#999999"}


def apply_style() -> None:
    plt.rcParams.update({
        "font.size": 7, "axes.titlesize": 7.5, "axes.labelsize": 7, "xtick.labelsize": 6, "ytick.labelsize": 6,
        "legend.fontsize": 6.5, "figure.dpi": 100, "savefig.dpi": 200, "pdf.fonttype": 42, "ps.fonttype": 42,
        "axes.spines.top": False, "axes.spines.right": False, "hatch.linewidth": 0.5,
    })


def save(fig: plt.Figure, stem: str | Path) -> list[Path]:
    """`stem`.pdf and `stem`.png (200 dpi), tight, then close the figure."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".pdf"), stem.with_suffix(".png")]
    for path in paths:
        fig.savefig(path, bbox_inches="tight", pad_inches=0.03)
    plt.close(fig)
    return paths


# --- heatmaps --------------------------------------------------------------------------------------


def heatmap(ax, mean: np.ndarray, std: np.ndarray | None, *, vmin: float, vmax: float, cmap: str,
            digits: int = 2, fontsize: float = 4.5, xlabel: str = "", ylabel: str = "", yticklabels=None,
            xticklabels=None, extra: np.ndarray | None = None):
    """Cells coloured by `mean`, annotated 'mean' over '±std' (std omitted where undefined), plus an
    optional third line per cell from `extra` (strings, '' for none)."""
    mean = np.atleast_2d(mean)
    std = None if std is None else np.atleast_2d(std)
    image = ax.imshow(np.ma.masked_invalid(mean), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto",
                      interpolation="nearest")
    norm = image.norm  # text colour follows the cell's luminance, so it stays readable on any colour map
    for (i, j), value in np.ndenumerate(mean):
        if not np.isfinite(value):
            continue
        text = _short(value, digits)
        if std is not None and np.isfinite(std[i, j]):
            text += "\n±" + _short(std[i, j], digits)
        if extra is not None and extra[i, j]:
            text += "\n" + extra[i, j]
        r, g, b, _ = image.cmap(norm(value))
        colour = "white" if 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.45 else "black"  # by cell luminance
        ax.text(j, i, text, ha="center", va="center", fontsize=fontsize, color=colour, linespacing=0.9)
    ax.set_xticks(range(mean.shape[1]), xticklabels if xticklabels is not None else range(mean.shape[1]))
    ax.set_yticks(range(mean.shape[0]), yticklabels if yticklabels is not None else range(mean.shape[0]))
    ax.tick_params(length=0, pad=1.5)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return image


def _short(value: float, digits: int) -> str:
    """Compact cell text: fractions lose the leading zero (0.44 -> .44) so two lines fit a small cell."""
    text = f"{value:.{digits}f}"
    if digits >= 2 and abs(value) < 1:
        text = text.replace("0.", ".", 1)
    return text


def head_mlp_panel(fig, spec, heads_mean, heads_std, mlp_mean, mlp_std, *, title: str, cmap: str,
                   vmin: float = 0.0, vmax: float = 1.0, digits: int = 2, cbar_label: str = ""):
    """A layer x head heatmap with the per-layer MLP strip underneath (Figure 1 / Appendix B layout)."""
    layers, heads = heads_mean.shape
    grid = spec.subgridspec(2, 2, height_ratios=[layers, 1.4], width_ratios=[heads, 0.45], hspace=0.12, wspace=0.06)
    ax_h = fig.add_subplot(grid[0, 0])
    fontsize = 4.4 if heads <= 12 else 3.4
    image = heatmap(ax_h, heads_mean, heads_std, vmin=vmin, vmax=vmax, cmap=cmap, digits=digits,
                    fontsize=fontsize, xlabel="head", ylabel="layer")
    ax_h.xaxis.set_label_position("top")
    ax_h.xaxis.tick_top()
    ax_h.set_title(title, pad=12)
    ax_m = fig.add_subplot(grid[1, 0])
    heatmap(ax_m, mlp_mean[None, :], None if mlp_std is None else mlp_std[None, :], vmin=vmin, vmax=vmax,
            cmap=cmap, digits=digits, fontsize=fontsize, xlabel="layer (MLP)", yticklabels=["MLP"])
    cax = fig.add_subplot(grid[0, 1])
    bar = fig.colorbar(image, cax=cax)
    if digits < 2:  # counts of tasks: whole-number ticks
        bar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    bar.ax.tick_params(labelsize=5.5, length=2)
    bar.set_label(cbar_label, fontsize=6)
    return ax_h, ax_m


def _data_range(*arrays, step: float = 0.05) -> tuple[float, float]:
    """Colour limits around the data (m-pruning fractions span ~0.4-0.6: a 0-1 scale would hide the
    layer trend), widened to multiples of `step`."""
    values = np.concatenate([np.ravel(a) for a in arrays])
    values = values[np.isfinite(values)]
    lo, hi = math.floor(values.min() / step) * step, math.ceil(values.max() / step) * step
    return (lo, hi) if hi > lo else (lo - step, hi + step)
