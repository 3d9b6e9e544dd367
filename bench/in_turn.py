"""How steady is one point of the crossover grid? Time it again and again, as the grid does.

Times one point's implementations through the grid's own ``time_in_turn``
(``--times`` timings in a row, the default grid's settings) and prints, for each
timing, gbdnn's median over a peer's (``--peer``) and the same ratio paired
round by round (``paired_ratio``, as ``kernel_choice`` judges), and with ``--slices`` the
median of every burst of calls of the two, in microseconds: a slice of its own,
or its turn in a slice shared with the other short calls (the first burst of each
timing is its untimed warm-up). Ends with how often
gbdnn was above the peer by each ratio, and their spread.

    python bench/in_turn.py --shape 1024x1024 --batch 1 --sparsity 0.995 --slices
    python bench/in_turn.py --shape 4096x4096 --batch 64 --sparsity 0.9 --times 5
    python bench/in_turn.py --sparsity 0.995 --only   # gbdnn and SciPy, no other
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from gbdnn.bench import DEFAULT_GRID
from gbdnn.bench.crossover import _data, paired_ratio, time_in_turn
from gbdnn.bench.peers import implementations
from gbdnn.envinfo import environment

#: A pause this long between two calls of one implementation starts a new burst.
BURST_GAP = 0.005


def logged(name: str, run, log: list):
    """``run``, appending ``(name, start, seconds)`` of every call to ``log``."""

    def call():
        start = time.perf_counter()
        out = run()
        log.append((name, start, time.perf_counter() - start))
        return out

    return call


def burst_medians(log: list, name: str) -> list[float]:
    """Median seconds of each burst of ``name``'s calls: calls back to back, with no
    other implementation's call and no pause over ``BURST_GAP`` between them (a slice
    of its own, or its turn in a shared slice). A burst's first call, untimed by the
    grid when the call is short, is left out where the burst has more."""
    bursts: list[list[float]] = []
    end, previous = -1.0, None
    for n, start, seconds in log:
        if n == name:
            if previous != name or start - end > BURST_GAP:
                bursts.append([])
            bursts[-1].append(seconds)
            end = start + seconds
        previous = n
    return [float(np.median(b[1:] if len(b) > 1 else b)) for b in bursts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="1024x1024", help="IN x OUT, e.g. 4096x4096")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--sparsity", type=float, default=0.995, help="weight sparsity")
    parser.add_argument("--activation", type=float, default=0.0, help="fraction of zeros in X")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--times", type=int, default=25, help="timings of the point")
    parser.add_argument(
        "--peer", default="SciPy CSR", help="the implementation gbdnn is set against"
    )
    parser.add_argument(
        "--only",
        action="store_true",
        help="time gbdnn and the peer alone (by default with every implementation of the grid)",
    )
    parser.add_argument(
        "--slices", action="store_true", help="print every slice's or burst's median"
    )
    args = parser.parse_args()
    try:
        shape = tuple(int(v) for v in args.shape.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 2 or min(shape) < 1:
        parser.error(f"--shape must be IN x OUT, two positive integers, got {args.shape!r}")
    if min(args.batch, args.times) < 1:
        parser.error("--batch and --times must be positive")
    if not (0 <= args.sparsity < 1 and 0 <= args.activation < 1):
        parser.error("--sparsity and --activation must be in [0, 1)")
    impls = implementations(args.dtype)
    if args.peer not in impls or args.peer == "gbdnn":
        parser.error(f"--peer must be one of {', '.join(n for n in impls if n != 'gbdnn')}")
    if args.only:
        impls = {name: impls[name] for name in ("gbdnn", args.peer)}

    w, x = _data(shape, args.batch, args.sparsity, args.activation, DEFAULT_GRID.seed)
    log: list = []
    runs = {
        name: logged(name, prepare(w, x, args.dtype).run, log) for name, prepare in impls.items()
    }
    print(environment())
    print(
        f"{args.batch} x {shape[0]} through {shape[0]} x {shape[1]}, {args.dtype}, "
        f"{100 * args.sparsity:g} % sparse, {100 * args.activation:g} % zeros; "
        f"gbdnn's median over {args.peer}'s, {args.times} timings of {len(runs)} implementations"
    )
    ratios, paired = [], []
    for _ in range(args.times):
        log.clear()
        timed = time_in_turn(runs, DEFAULT_GRID)
        ratios.append(timed["gbdnn"].median / timed[args.peer].median)
        paired.append(paired_ratio(timed["gbdnn"].rounds, timed[args.peer].rounds) or np.nan)
        line = f"{ratios[-1]:.2f} (paired by round {paired[-1]:.2f})"
        if args.slices:
            for name in ("gbdnn", args.peer):
                line += f" | {name}: " + " ".join(
                    f"{s * 1e6:.0f}" for s in burst_medians(log, name)
                )
        print(line, flush=True)
    for what, values in (("ratio", ratios), ("paired by round", paired)):
        above = sum(r > 1 for r in values)
        low, mid, high = np.nanpercentile(values, [0, 50, 100])
        print(
            f"{what}: gbdnn above {args.peer} in {above} of {len(values)}; "
            f"{low:.2f} / {mid:.2f} / {high:.2f} (min / median / max)"
        )


if __name__ == "__main__":
    main()
