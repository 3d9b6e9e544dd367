"""Figures of the crossover grid: time against weight sparsity."""

from __future__ import annotations

from pathlib import Path

from .crossover import crossovers
from .peers import OURS

_MARKED = ("NumPy dense", "NumPy dense FP32")


def plot(rows: list[dict], out_dir: str | Path, *, stem: str = "crossover") -> list[Path]:
    """One figure per (value type, activation sparsity): a panel per (shape, batch).

    Log-scale time against weight sparsity, one line per implementation, the
    crossover of gbdnn against dense NumPy marked (dashed), with NumPy's median
    time over all sparsities that it is taken against (dotted). Written as PNG and SVG.

    Returns
    -------
    list of Path
        The files written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    cross = {
        (c["shape"], c["batch"], c["activation"], c["dtype"], c["peer"]): c
        for c in crossovers(rows)
    }
    written = []
    for dtype in dict.fromkeys(r["dtype"] for r in rows):
        for act in dict.fromkeys(r["activation"] for r in rows if r["dtype"] == dtype):
            sub = [r for r in rows if r["dtype"] == dtype and r["activation"] == act]
            panels = list(dict.fromkeys((r["shape"], r["batch"]) for r in sub))
            fig, axes = plt.subplots(
                1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False
            )
            for ax, (shape, batch) in zip(axes[0], panels, strict=True):
                here = [r for r in sub if r["shape"] == shape and r["batch"] == batch]
                for name in dict.fromkeys(r["implementation"] for r in here):
                    pts = sorted(
                        (r["sparsity"], r["median_s"]) for r in here if r["implementation"] == name
                    )
                    ax.plot(
                        [1 - p for p, _ in pts],
                        [t * 1e3 for _, t in pts],
                        marker="o",
                        markersize=3,
                        label=name,
                        linewidth=2 if name in OURS else 1,
                        linestyle=":" if name.endswith(" kernel") else "-",
                    )
                for peer in _MARKED:
                    c = cross.get((shape, batch, act, dtype, peer))
                    if c is None:
                        continue
                    # the peer's median over all sparsities, which the crossover is taken against
                    ax.axhline(c["peer_s"] * 1e3, color="grey", linestyle=":", linewidth=0.8)
                    if c["crossover"] is not None:
                        at = max(1 - c["crossover"], 1e-4)
                        ax.axvline(at, color="k", linestyle="--", linewidth=0.8)
                        ax.text(
                            at,
                            ax.get_ylim()[1],
                            f" {100 * c['crossover']:.1f} %",
                            va="top",
                            fontsize=8,
                        )
                _sparsity_axis(ax, [r["sparsity"] for r in here])
                ax.set_yscale("log")
                ax.set_title(f"{shape}, batch {batch}", fontsize=9)
                ax.set_xlabel("weight sparsity (%), on a log density scale")
                ax.set_ylabel("time (ms)")
                ax.grid(True, which="both", alpha=0.3)
            axes[0][0].legend(fontsize=7)
            fig.suptitle(
                f"{dtype}, activations {100 * act:.0f} % zeros "
                "(dashed: gbdnn overtakes dense NumPy's median, dotted)",
                fontsize=10,
            )
            fig.tight_layout()
            for ext in ("png", "svg"):
                path = out_dir / f"{stem}-{dtype}-act{int(100 * act)}.{ext}"
                fig.savefig(path, dpi=110)
                written.append(path)
            plt.close(fig)
    return written


def _sparsity_axis(ax, sparsities: list[float]) -> None:
    """x: density ``1 - sparsity`` on a log scale, decreasing, labelled as sparsity."""
    ticks = sorted({1 - s for s in sparsities if s < 1}, reverse=True)
    ax.set_xscale("log")
    ax.set_xlim(max(ticks) * 1.3, min(ticks) / 1.3)
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{100 * (1 - t):g}" for t in ticks], rotation=60, fontsize=7)
    ax.minorticks_off()
