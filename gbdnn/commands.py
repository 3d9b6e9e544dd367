"""The model pipeline commands: ``gbdnn info | prune | quantize | infer | convert``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from . import pipeline
from .envinfo import environment
from .io.rows import read_rows, write_rows

PIPELINE_EXAMPLES = """\
a pipeline, each step reading and writing model files (.npz, or .onnx with the onnx extra):
  gbdnn info model.npz
  gbdnn prune model.npz --method magnitude --sparsity 0.9 -o pruned.npz
  gbdnn prune model.onnx --method csp --sparsity 0.9 --calib calib.npy -o pruned.npz
  gbdnn quantize pruned.npz --bits 4 --per-channel -o int4.npz
  gbdnn quantize pruned.npz --bits 8 --calib calib.npy -o int8.npz
  gbdnn infer int4.npz inputs.npy -o outputs.npy
  gbdnn convert pruned.npz -o pruned.onnx
"""


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def _layer_ids(text: str) -> tuple[int | str, ...]:
    return tuple(int(v) if v.isdigit() else v for v in text.split(","))


def _common(p: argparse.ArgumentParser, output: bool = True) -> None:
    p.add_argument("model", metavar="MODEL", help="gbdnn model file (.npz) or ONNX (.onnx)")
    if output:
        p.add_argument("-o", "--output", required=True, metavar="OUT", help="file to write")
        p.add_argument("--force", action="store_true", help="replace OUT if it exists")


def subcommand(commands: Any, name: str, help_: str, description: str, examples: str) -> Any:
    """A subcommand parser whose help ends with ``examples``."""
    return commands.add_parser(
        name,
        help=help_,
        description=description,
        epilog="examples:\n" + examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_commands(commands: Any) -> None:
    """Add the pipeline subcommands to the ``gbdnn`` parser."""
    p = subcommand(
        commands,
        "info",
        "layers, shapes, nnz, sparsity, value types and bytes of a model file",
        "Describe a model file: per layer its type, shape, stored weights (nnz), sparsity, "
        "value type and bytes at rest (uncompressed arrays).",
        "  gbdnn info model.npz\n  gbdnn info model.onnx --json\n",
    )
    _common(p, output=False)
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = subcommand(
        commands,
        "prune",
        "prune a model's Linear layers (magnitude or compressed sensing)",
        "Prune every Linear layer to a fraction of zeros. magnitude: drop the smallest weights "
        "(per layer, or one global threshold). csp: compressed-sensing pruning that refits the "
        "kept weights to reproduce each layer's output on calibration rows (--calib).",
        "  gbdnn prune model.npz --method magnitude --sparsity 0.9 -o pruned.npz\n"
        "  gbdnn prune model.npz --method magnitude --sparsity 0.9 --scope global -o p.npz\n"
        "  gbdnn prune model.npz --method csp --sparsity 0.7 --calib x.npy -o pruned.npz\n",
    )
    _common(p)
    p.add_argument("--method", choices=("magnitude", "csp"), required=True)
    p.add_argument("--sparsity", type=fraction, required=True, help="fraction of zeros, [0, 1)")
    p.add_argument("--scope", choices=("layer", "global"), default="layer", help="magnitude only")
    p.add_argument("--solver", choices=("iht", "omp", "l1"), default="iht", help="csp only")
    _calib_args(p)
    p.add_argument(
        "--exclude", type=_layer_ids, default=(), metavar="IDS", help="layers to leave, e.g. 0,out"
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar over the layers (csp; default: when stderr is a terminal)",
    )

    p = subcommand(
        commands,
        "quantize",
        "quantize a model's weights to int2..int8 or a codebook",
        "Quantize every Linear layer. With --calib: integer weights and activations, run with "
        "exact integer GraphBLAS products. Without: weight-only, the weights stored as BITS-bit "
        "indices into their uniform levels (or Lloyd-Max centroids with --codebook) and "
        "computed in FP32. int4 and below are packed two per byte.",
        "  gbdnn quantize model.npz --bits 4 --per-channel -o int4.npz\n"
        "  gbdnn quantize model.npz --bits 8 --calib x.npy -o int8.npz\n"
        "  gbdnn quantize model.npz --bits 3 --codebook -o cb3.npz\n",
    )
    _common(p)
    p.add_argument("--bits", type=int, choices=range(2, 9), default=8, metavar="{2..8}")
    p.add_argument("--per-channel", action="store_true", help="one scale per output channel")
    p.add_argument("--asymmetric", action="store_true", help="with a zero point")
    p.add_argument("--clip", choices=("max", "percentile", "mse", "sawb"), default="max")
    p.add_argument("--codebook", action="store_true", help="Lloyd-Max centroids")
    _calib_args(p)

    p = subcommand(
        commands,
        "infer",
        "run a model on the rows of a data file",
        "Run the model on INPUT's rows (.npy, .npz, .mtx or challenge .tsv) and write the "
        "outputs (.npy dense; .npz SciPy sparse; .mtx; .tsv).",
        "  gbdnn infer model.npz x.npy -o y.npy\n"
        "  gbdnn infer model.npz images.tsv -o y.npz --threads 2 --progress\n",
    )
    _common(p)
    p.add_argument("input", metavar="INPUT", help="rows to run the model on")
    p.add_argument("--batch-size", type=positive, help="rows per batch (default: automatic)")
    p.add_argument("--threads", type=positive, help="threads (default: all cores)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)

    p = subcommand(
        commands,
        "convert",
        "convert a model between gbdnn .npz and ONNX",
        "Read MODEL (.npz or .onnx) and write OUT in the format its suffix names.",
        "  gbdnn convert model.onnx -o model.npz\n  gbdnn convert model.npz -o model.onnx\n",
    )
    _common(p)


def _calib_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--calib", metavar="DATA", help="calibration rows (.npy, .npz, .mtx, .tsv)")
    p.add_argument("--calib-rows", type=positive, metavar="N", help="use the first N rows")


def run(args: argparse.Namespace) -> int:
    """Run a pipeline command; returns the exit status."""
    model, metadata = pipeline.read_model(args.model)
    if args.command == "info":
        return _info(args, model, metadata)
    if args.command == "infer":
        return _infer(args, model)
    calib = None
    if getattr(args, "calib", None):
        calib = pipeline.read_calibration(args.calib, model, args.calib_rows)
    if args.command == "prune":
        model, step = pipeline.prune(
            model,
            args.method,
            args.sparsity,
            calib=calib,
            scope=args.scope,
            solver=args.solver,
            exclude=args.exclude,
            progress=sys.stderr.isatty() if args.progress is None else args.progress,
        )
    elif args.command == "quantize":
        model, step = pipeline.quantize(
            model,
            args.bits,
            per_channel=args.per_channel,
            symmetric=not args.asymmetric,
            clip=args.clip,
            codebook=args.codebook,
            calib=calib,
        )
    else:
        step = {}
    if step:
        step["command"] = args.command
        metadata = {**metadata, "steps": [*metadata.get("steps", []), step]}
        print(json.dumps(step))
    path = pipeline.write_model(model, args.output, metadata=metadata, overwrite=args.force)
    print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


def _info(args: argparse.Namespace, model: Any, metadata: dict) -> int:
    rows = pipeline.describe(model)
    if args.json:
        print(json.dumps({"layers": rows, "metadata": metadata}, indent=2))
        return 0
    print(f"{'#':>3}  {'type':<9} {'shape':>13} {'nnz':>10} {'sparsity':>9} {'bytes':>10}  dtype")
    for r in rows:
        if "shape" not in r:
            clip = "" if r.get("max_value") is None else f" (max {r['max_value']:g})"
            print(f"{r['layer']:>3}  {r['type']}{clip}")
            continue
        shape = "x".join(map(str, r["shape"]))
        print(
            f"{r['layer']:>3}  {r['type']:<9} {shape:>13} {r['nnz']:>10} "
            f"{r['sparsity']:>9.4f} {r['bytes']:>10}  {r['dtype']}"
        )
    total = sum(r.get("bytes", 0) for r in rows)
    print(f"total: {model.nnz} weights, {total} bytes; file {args.model}")
    for step in metadata.get("steps", []):
        print(f"step: {json.dumps(step)}")
    return 0


def _infer(args: argparse.Namespace, model: Any) -> int:
    x = read_rows(args.input, ncols=model.in_features, dtype=model.dtype.name)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    start = time.perf_counter()
    y = model.predict(x, batch_size=args.batch_size, threads=args.threads, progress=progress)
    seconds = time.perf_counter() - start
    path = write_rows(y, args.output, overwrite=args.force)
    rows = x.nrows if hasattr(x, "nrows") else x.shape[0]
    result = {
        "rows": rows,
        "seconds": seconds,
        "edges_per_second": rows * model.nnz / seconds if seconds > 0 else None,
        "output": str(path),
    }
    if args.json:
        print(json.dumps({**result, "environment": environment()}, indent=2))
    else:
        print(
            f"{rows} rows in {seconds:.3f} s ({result['edges_per_second']:.4g} edges/s); "
            f"wrote {path}"
        )
    return 0
