"""PNG figures of the paper-reproduction report (matplotlib, Agg; no display needed).

Figures are drawn on a bare :class:`matplotlib.figure.Figure`, which renders through Agg without
touching pyplot's global state, so importing this module never selects a GUI backend.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

__all__ = ["plot_storage", "plot_accuracy"]

_STYLES = {"Dense": ("black", "-"), "COO": ("tab:gray", "--"), "CSR": ("tab:blue", "--"),
           "CSC": ("tab:orange", "--"), "CSR_P": ("tab:blue", "-"), "CSC_P": ("tab:orange", "-")}


def _save(fig: Figure, out) -> Path:
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"Output file must end in .png, not {str(out)!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return out


def plot_storage(curves: dict, *, out, title: str = "", break_even: dict | None = None) -> Path:
    """Storage in bits against density, one line per format (like the paper's Fig. 7).

    Parameters
    ----------
    curves : dict
        ``{format: [(density, bits), ...]}``.
    out : path
        PNG file to write (parent directories are created).
    title : str
        Figure title (say the matrix size and bit widths).
    break_even : dict, optional
        ``{format: density}``; each is marked on its format's line.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    if not curves:
        raise ValueError("plot_storage needs at least one curve")
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    # Dense is flat, so a format meets it at height dense bits, at its break-even density.
    dense_bits = curves["Dense"][0][1] if curves.get("Dense") else None
    for fmt, points in curves.items():
        xs, ys = zip(*points)
        color, ls = _STYLES.get(fmt, (None, "-"))
        ax.plot(xs, ys, ls, color=color, label=fmt)
        if break_even and fmt in break_even and dense_bits is not None:
            d = float(break_even[fmt])
            if 0 < d < 1:
                ax.plot([d], [dense_bits], "o", color=color, markersize=4)
    ax.set_xlabel("density rho")
    ax.set_ylabel("storage (bits)")
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, out)


def plot_accuracy(records: list, *, out, title: str = "Accuracy vs FLOPs") -> Path:
    """Top-1 accuracy against conv FLOPs, one labelled point per model.

    Parameters
    ----------
    records : list of dict
        Each with ``"model"`` (str), ``"flops"`` (number) and ``"accuracy"`` (fraction or percent).
    out : path
        PNG file to write.
    """
    if not records:
        raise ValueError("plot_accuracy needs at least one record")
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    for r in records:
        ax.plot([r["flops"]], [r["accuracy"]], "o")
        ax.annotate(r["model"], (r["flops"], r["accuracy"]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("conv FLOPs (1 MAC = 1 FLOP)")
    ax.set_ylabel("top-1 accuracy")
    ax.grid(True, alpha=0.3)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, out)
