"""The README's crossover tables, regenerated from a grid's CSV.

Prints the block of the README that starts "Default grid measured on" (the
machine and versions, one crossover table per value type, the kernel-choice
table); with ``--readme`` it replaces that block in the file instead, up to the
paragraph that starts "This grid was measured on", and leaves the rest as it was.

    python bench/readme_tables.py bench/results/default/crossover.csv --readme README.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gbdnn.bench import crossovers, kernel_choice, load_rows
from gbdnn.bench.report import kernel_choice_table, pivot_table

START = "Default grid measured on "
END = "\n\nThis grid was measured on"
NAMES = {"numpy": "NumPy", "scipy": "SciPy"}


def block(csv_path: str) -> str:
    """The README block of the grid in ``csv_path``."""
    rows = load_rows(csv_path)
    if not rows:
        raise ValueError(f"{csv_path} holds no grid row")
    env = rows[0]
    versions = json.loads(env["versions"])  # (a JSON string in the CSV)
    libraries = ", ".join(
        f"{NAMES.get(name, name)} {version}"
        for name, version in sorted(versions.items(), key=lambda kv: kv[0] in NAMES)
        if name != "gbdnn"
    )
    correct = sum(r["correct"] for r in rows)
    cross = crossovers(rows)
    dtypes = list(dict.fromkeys(r["dtype"] for r in rows))
    return "\n\n".join(
        [
            f"{START}{env['cpu']}, {env['threads']} threads, BLAS {env['blas']}, {libraries} "
            f"(`gbdnn bench crossover -o bench/results/default`, {len(rows)} measurements; "
            f"{correct} of {len(rows)} checked correct). The weight sparsity from which gbdnn "
            'is faster than each peer, interpolated; "never" where it is not faster at 99.9 %. '
            "Figures: `bench/results/default/crossover-<type>-act<zeros>.png`.",
            *(pivot_table(cross, dtype) for dtype in dtypes),
            kernel_choice_table(kernel_choice(rows)),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", help="crossover.csv of a grid run")
    parser.add_argument("--readme", help="replace the block in this file instead of printing")
    args = parser.parse_args()
    try:
        text = block(args.csv)
    except (OSError, KeyError, ValueError) as e:
        parser.error(f"cannot read a crossover grid from {args.csv}: {e}")
    if args.readme is None:
        print(text)
        return
    readme = Path(args.readme)
    try:
        old = readme.read_text()
    except OSError as e:
        parser.error(f"cannot read {readme}: {e}")
    start, end = old.find(START), old.find(END)
    if start < 0 or end < start:
        parser.error(f"{readme} has no block from {START!r} to {END.strip()!r}")
    readme.write_text(old[:start] + text + old[end:])


if __name__ == "__main__":
    main()
