"""Text reports of the crossover grid."""

from __future__ import annotations

from .peers import DENSE_PEERS


def markdown_table(cross: list[dict], rows: list[dict]) -> str:
    """The crossover sparsities as a Markdown table, with the machine they come from."""
    env = rows[0] if rows else {}
    lines = [
        f"Machine: {env.get('cpu', '?')}, {env.get('threads', '?')} threads, BLAS "
        f"{env.get('blas', '?')}; versions {env.get('versions', '?')}",
        "",
        "Dense peers are compared at their median time over all weight sparsities (their work "
        "does not depend on it); sparse peers point by point.",
        "",
        "| shape | batch | activations (zeros) | value type | gbdnn overtakes | at weight "
        "sparsity |",
        "| --- | ---: | ---: | --- | --- | ---: |",
    ]
    for c in sorted(
        cross, key=lambda c: (c["dtype"], c["shape"], c["batch"], c["activation"], c["peer"])
    ):
        at = "never" if c["crossover"] is None else f"{100 * c['crossover']:.1f} %"
        lines.append(
            f"| {c['shape']} | {c['batch']} | {100 * c['activation']:.0f} % "
            f"| {c['dtype']} | {c['peer']} | {at} |"
        )
    return "\n".join(lines)


def pivot_table(cross: list[dict], dtype: str) -> str:
    """Crossovers of one value type: a row per (shape, batch, activations), a column per peer
    (the dense peers first, then the sparse ones, each by name)."""
    mine = [c for c in cross if c["dtype"] == dtype]
    peers = sorted({c["peer"] for c in mine}, key=lambda peer: (peer not in DENSE_PEERS, peer))
    cells = {(c["shape"], c["batch"], c["activation"], c["peer"]): c["crossover"] for c in mine}
    keys = sorted(
        {(c["shape"], c["batch"], c["activation"]) for c in mine},
        key=lambda k: (int(k[0].split("x")[0]), k[1], k[2]),
    )
    lines = [
        f"| {dtype}: shape | batch | input zeros | " + " | ".join(peers) + " |",
        "| --- | ---: | ---: |" + " ---: |" * len(peers),
    ]
    for shape, batch, act in keys:
        row = []
        for peer in peers:
            c = cells.get((shape, batch, act, peer), "n/a")
            row.append("n/a" if c == "n/a" else "never" if c is None else f"{100 * c:.1f} %")
        lines.append(f"| {shape} | {batch} | {100 * act:.0f} % | " + " | ".join(row) + " |")
    return "\n".join(lines)


def _points(n: int) -> str:
    return f"{n} point" if n == 1 else f"{n} points"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _worst(values: list[float], limit: float, what: str) -> str:
    """``what`` took: its median and its worst value, and how many are over ``limit``."""
    ordered = sorted(values)
    over = sum(v > limit for v in ordered)
    return (
        f"{what} {ordered[len(ordered) // 2]:.2f}x the faster kernel's time at the median, "
        f"{ordered[-1]:.2f}x at worst, {_points(over)} over {limit:.2f}x"
    )


def kernel_choice_table(choices: list[dict], limit: float = 1.10, most: int = 12) -> str:
    """How close gbdnn's automatic kernel choice came to the faster kernel, worst points
    first (by the larger of the ratio of medians and the ratio paired by round)."""
    if not choices:
        return "Kernel choice: no point was timed with each kernel alone."
    paired = [c["paired_ratio"] for c in choices if c["paired_ratio"] is not None]
    summary = _worst([c["ratio"] for c in choices], limit, "the automatic choice took")
    if paired:
        summary += "; " + _worst(paired, limit, f"paired round by round ({_points(len(paired))})")
    picks = [c["pick_ratio"] for c in choices if c["pick_ratio"] is not None]
    if picks:
        summary += "; " + _worst(
            picks, limit, f"the kernel it ran, timed alone ({_points(len(picks))} where it ran one)"
        )
    lines = [
        f"Kernel choice (FP32, {_points(len(choices))} timed with each kernel alone): {summary}.",
        "",
        "| shape | batch | input zeros | weight sparsity | auto / faster kernel "
        "| paired by round | faster | auto ran | its kernel alone / faster |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |",
    ]

    def worst(c: dict) -> float:
        return max(c["ratio"], c["paired_ratio"] or 0.0)

    for c in sorted(choices, key=worst, reverse=True)[:most]:
        lines.append(
            f"| {c['shape']} | {c['batch']} | {100 * c['activation']:.0f} % "
            f"| {100 * c['sparsity']:g} % | {c['ratio']:.2f} "
            f"| {_ratio(c['paired_ratio'])} | {c['best_kernel']} "
            f"| {c['auto_kernel'] or 'n/a'} | {_ratio(c['pick_ratio'])} |"
        )
    return "\n".join(lines)
