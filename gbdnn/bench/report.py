"""Text reports of the crossover grid."""

from __future__ import annotations


def markdown_table(cross: list[dict], rows: list[dict]) -> str:
    """The crossover sparsities as a Markdown table, with the machine they come from."""
    env = rows[0] if rows else {}
    lines = [
        f"Machine: {env.get('cpu', '?')}, {env.get('threads', '?')} threads, BLAS "
        f"{env.get('blas', '?')}; versions {env.get('versions', '?')}",
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
