"""The ``gbdnn`` command line."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

import numpy as np

from . import challenge
from .commands import PIPELINE_EXAMPLES, add_commands, fraction, positive, subcommand
from .commands import run as run_pipeline
from .envinfo import environment
from .errors import GbdnnError, ParameterError
from .io.graphchallenge import find_images, read_categories, read_images, read_layers, truth_path

DEFAULT_INPUTS = 10000
CHALLENGE_EXAMPLES = """\
  gbdnn challenge                          generated 1024-neuron, 120-layer network,
                                           checked against a SciPy reference
  gbdnn challenge --data ../shared/data/graphchallenge
                                           the official files, checked against the truth
  gbdnn challenge --data DIR --tile 50     1200 real images tiled to 60000 rows
  gbdnn challenge --neurons 4096 --layers 30 --threads 2 --json
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``gbdnn``."""
    parser = argparse.ArgumentParser(
        prog="gbdnn",
        description="Sparse DNN inference on GraphBLAS.",
        epilog=PIPELINE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ch = subcommand(
        commands,
        "challenge",
        "run the Sparse DNN Graph Challenge and report edges/s",
        "Run the Sparse DNN Graph Challenge inference, report edges/s "
        "(inputs x total nnz(W) / inference time, file reading excluded) and check "
        "the categories. Exit status 1 when they differ from the expected ones.",
        CHALLENGE_EXAMPLES,
    )
    ch.add_argument(
        "--data", metavar="DIR", help="folder with the official files (default: generate a network)"
    )
    ch.add_argument(
        "--neurons",
        type=positive,
        default=1024,
        help="neurons per layer: 1024, 4096, 16384 or 65536 (default 1024)",
    )
    ch.add_argument("--layers", type=positive, default=120, help="layers (default 120)")
    ch.add_argument(
        "--inputs",
        type=positive,
        help=f"generated input rows, without --data (default {DEFAULT_INPUTS})",
    )
    ch.add_argument(
        "--tile",
        type=positive,
        default=1,
        metavar="K",
        help="repeat the input rows K times (default 1)",
    )
    ch.add_argument("--threads", type=positive, help="threads (default: all cores)")
    ch.add_argument("--batch-size", type=positive, help="rows per batch (default: automatic)")
    ch.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ch.add_argument(
        "--seed", type=int, help="seed of the generated data, without --data (default 0)"
    )
    ch.add_argument("--json", action="store_true", help="print one JSON object")
    ch.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars (default: when stderr is a terminal)",
    )
    add_commands(commands)
    bench = commands.add_parser("bench", help="benchmarks: crossover sparsity, calibration")
    bench_commands = bench.add_subparsers(dest="bench_command", required=True, metavar="WHAT")
    cross = subcommand(
        bench_commands,
        "crossover",
        "time gbdnn against dense BLAS and sparse peers; find the crossover sparsity",
        "Time Y = X W for gbdnn, NumPy dense (BLAS), SciPy CSR and, when installed, "
        "PyTorch dense / sparse CSR / dynamic int8, over a grid of shapes, batch sizes, weight "
        "and activation sparsities and value types. Writes crossover.csv/.json, the crossover "
        "table (crossover.md) and figures (PNG, SVG) to the output folder.",
        "  gbdnn bench crossover --quick -o bench-out\n"
        "  gbdnn bench crossover --shapes 2048x2048 --batches 64 --dtypes float32 -o out\n"
        "  gbdnn bench crossover -o out --resume      continue an interrupted run\n",
    )
    cross.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")
    cross.add_argument(
        "--quick", action="store_true", help="a small grid that finishes in about two minutes"
    )
    cross.add_argument(
        "--resume", action="store_true", help="skip points already in DIR/crossover.csv and append"
    )
    cross.add_argument("--shapes", type=_shapes, help="e.g. 1024x1024,4096x4096")
    cross.add_argument("--batches", type=_int_list, help="e.g. 1,64,1024")
    cross.add_argument("--sparsities", type=_fraction_list, help="weight sparsities, e.g. 0,0.9")
    cross.add_argument(
        "--activations", type=_fraction_list, help="fractions of zeros in the input, e.g. 0,0.5,0.8"
    )
    cross.add_argument("--dtypes", type=_dtype_list, help="float32,float64,int8")
    cross.add_argument(
        "--budget", type=float, help="seconds of repeats per implementation and point"
    )
    cross.add_argument(
        "--rounds", type=positive, help="rounds in which a point's implementations take turns"
    )
    cross.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    calibrate = bench_commands.add_parser(
        "calibrate",
        help="measure this machine's kernel costs for gbdnn's path choice",
        description="Measure the costs of gbdnn's sparse, dense, dot and BLAS kernels on this "
        "machine (see gbdnn.tuning) and cache them for the per-layer kernel choice.",
    )
    calibrate.add_argument(
        "--runs",
        type=positive,
        default=None,
        help="calibrations whose median is taken, cost by cost (default 3, 4-5 s each)",
    )
    return parser


def _int_list(text: str) -> tuple[int, ...]:
    return tuple(positive(v) for v in text.split(","))


def _fraction_list(text: str) -> tuple[float, ...]:
    return tuple(fraction(v) for v in text.split(","))


def _shapes(text: str) -> tuple[tuple[int, int], ...]:
    out = []
    for part in text.split(","):
        try:
            n_in, n_out = (int(v) for v in part.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"shape {part!r} is not INxOUT") from None
        if n_in < 1 or n_out < 1:
            raise argparse.ArgumentTypeError(f"shape {part!r} must be positive")
        out.append((n_in, n_out))
    return tuple(out)


def _dtype_list(text: str) -> tuple[str, ...]:
    values = tuple(text.split(","))
    bad = [v for v in values if v not in ("float32", "float64", "int8")]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown value types {bad}; use float32,float64,int8")
    return values


def run_bench(args: argparse.Namespace) -> int:
    """``gbdnn bench ...``."""
    if args.bench_command == "calibrate":
        from dataclasses import asdict

        from .tuning import FRACTIONS, cache_path, calibrate

        costs = calibrate() if args.runs is None else calibrate(runs=args.runs)
        print(
            ", ".join(
                f"{k} {v:.3g}" + ("" if k in FRACTIONS else " s") for k, v in asdict(costs).items()
            )
            + f"; cached in {cache_path()}"
        )
        return 0
    from dataclasses import replace
    from pathlib import Path

    from .bench import DEFAULT_GRID, QUICK_GRID, crossovers, kernel_choice, plot, run_grid
    from .bench.report import kernel_choice_table, markdown_table, pivot_table
    from .tuning import cache_path, calibrate_once

    grid = QUICK_GRID if args.quick else DEFAULT_GRID
    overrides = {
        k: getattr(args, k)
        for k in ("shapes", "batches", "sparsities", "activations", "dtypes", "budget", "rounds")
        if getattr(args, k)
    }
    grid = replace(grid, **overrides)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    if calibrate_once():  # the automatic kernel choice timed is this machine's
        print(
            f"gbdnn: calibrated this machine's kernel costs, cached in {cache_path()}",
            file=sys.stderr,
        )
    rows = run_grid(grid, args.output, resume=args.resume, progress=progress)
    files = plot(rows, args.output)
    cross = crossovers(rows)
    pivots = "\n\n".join(pivot_table(cross, d) for d in dict.fromkeys(r["dtype"] for r in rows))
    table = markdown_table(cross, rows) + "\n\nBy peer (gbdnn faster from this sparsity on):\n\n"
    table += pivots + "\n\n" + kernel_choice_table(kernel_choice(rows))
    (Path(args.output) / "crossover.md").write_text(table + "\n")
    print(table)
    bad = [r for r in rows if not r["correct"]]
    for r in bad:
        print(
            f"INCORRECT: {r['implementation']} at {r['shape']} batch {r['batch']} "
            f"sparsity {r['sparsity']} ({r['dtype']}): relative error {r['rel_error']:.3g}",
            file=sys.stderr,
        )
    print(f"wrote {len(rows)} rows and {len(files)} figures to {args.output}")
    return 1 if bad else 0


def _version() -> str:
    from . import __version__

    return f"gbdnn {__version__}"


def _load(args: argparse.Namespace, progress: bool):
    """Weights, inputs, expected categories (or None) and what they come from."""
    if args.data:
        if args.inputs is not None or args.seed is not None:
            raise ParameterError("--inputs and --seed apply to generated data, not to --data")
        weights = read_layers(
            args.data, args.neurons, args.layers, dtype=args.dtype, progress=progress
        )
        x = read_images(find_images(args.data, args.neurons), args.neurons, dtype=args.dtype)
        truth = truth_path(args.data, args.neurons, args.layers)
        if truth is not None:
            expected = read_categories(truth)
            return weights, x, expected[expected < x.nrows], f"truth file {truth.name}"
    else:
        seed = args.seed or 0
        inputs = args.inputs or DEFAULT_INPUTS
        weights = challenge.radixnet(args.neurons, args.layers, seed=seed, dtype=args.dtype)
        x = challenge.sparse_inputs(inputs, args.neurons, seed=seed, dtype=args.dtype)
    return weights, x, None, "SciPy reference"


def run_challenge(args: argparse.Namespace) -> int:
    """``gbdnn challenge``: run, report, and return the exit status."""
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    bias = challenge.challenge_bias(args.neurons)
    start = time.perf_counter()
    weights, x, expected, source = _load(args, progress)
    load_seconds = time.perf_counter() - start
    if expected is None:  # independent reference on the untiled rows
        expected = challenge.reference_categories(weights, bias, x)
    model = challenge.challenge_model(weights, bias)
    rows = x.nrows
    x = challenge.tile_rows(x, args.tile)
    expected = np.concatenate([expected + k * rows for k in range(args.tile)])
    result = challenge.run(
        model,
        x,
        expected=expected,
        checked_against=source,
        threads=args.threads,
        batch_size=args.batch_size,
        progress=progress,
    )
    if args.json:
        out = result.to_dict()
        out.update(
            data=args.data or "generated",
            tile=args.tile,
            dtype=args.dtype,
            load_seconds=load_seconds,
            environment=environment(),
        )
        print(json.dumps(out, indent=2))
    else:
        print(
            f"network      {result.neurons} neurons x {result.layers} layers, "
            f"{result.nnz} weights ({args.data or 'generated RadiX-Net'})"
        )
        print(f"inputs       {result.inputs} rows ({rows} x tile {args.tile}), {args.dtype}")
        print(f"read/built   {load_seconds:.2f} s (not timed)")
        print(f"inference    {result.seconds:.3f} s on {result.threads} threads")
        print(f"rate         {result.edges_per_second:.4g} edges/s")
        verdict = "yes" if result.correct else "NO"
        print(
            f"categories   {result.categories.size} rows; equal to the {source} "
            f"({result.expected.size} rows): {verdict}"
        )
    return 0 if result.correct else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gbdnn`` command."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "bench":
            return run_bench(args)
        if args.command == "challenge":
            return run_challenge(args)
        return run_pipeline(args)
    except (GbdnnError, ValueError, FileExistsError, ImportError) as exc:
        print(f"gbdnn: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
