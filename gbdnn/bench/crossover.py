"""The crossover grid: time gbdnn and its peers, find where gbdnn wins.

Every grid point is a layer ``Y = X W`` with ``W`` (in x out) at a weight
sparsity (entries zeroed uniformly at random), ``X`` (batch x in) dense or
ReLU-like (a fraction of zeros), and a value type. For every implementation
the setup (conversions, formats) is untimed. The implementations of a point
are timed together, in turn (:func:`time_in_turn`): each is warmed up,
then every round gives each a slice of repeats, so all of them meet the
machine's slow and fast spells alike (this machine has spells 1.5-3x slow
lasting seconds, which timing one implementation after another charged to
whichever ran in them); short calls that leave no thread spinning share
their slice, in bursts of about 2 ms each in turn, as the machine's speed
also changes every few tens of milliseconds. Over the rounds each call is repeated until
``budget`` seconds or ``max_repeats``, whichever comes first, but for at
least ``min_seconds`` (sub-millisecond calls get hundreds of repeats, their
medians are otherwise noise); the median and the interquartile range are
kept. The result is checked against a float64 NumPy reference after timing:
relative error below 1e-10 (FP64), 1e-4 (FP32) or 0.1 (int8, a quantized
result).
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..envinfo import environment
from ..errors import ParameterError
from ..runner import available_cores, is_positive_int
from ..tuning import IDLE_STEP, as_record, current_costs, settle
from .peers import (
    DENSE_PEERS,
    KERNEL_CHECKS,
    OURS,
    blas_name,
    conversion_seconds,
    implementations,
)

TOLERANCE = {"float64": 1e-10, "float32": 1e-4, "int8": 0.1}
#: A call after which :func:`settle` waits longer than this leaves threads spinning.
SPIN_WAIT = 2.5 * IDLE_STEP
#: Calls shorter than this share a slice, in bursts of calls about this long.
BURST = 0.002
#: Rounds both must have been timed in for a ratio paired round by round (kernel_choice).
PAIRED_ROUNDS = 3
FIELDS = [
    "shape",
    "batch",
    "sparsity",
    "activation",
    "dtype",
    "implementation",
    "median_s",
    "iqr_s",
    "repeats",
    "rel_error",
    "correct",
    "weight_bytes",
    "convert_s",
    "round_medians_s",
    "kernel",
    "threads",
    "cpu",
    "blas",
    "versions",
]
#: Columns a grid of an older gbdnn did not write.
NEWER_FIELDS = {"round_medians_s", "kernel"}


def _values(value: object, each) -> bool:
    """Whether ``value`` is a non-empty tuple or list of items that pass ``each``."""
    return isinstance(value, (tuple, list)) and bool(value) and all(map(each, value))


def _real(value: object) -> bool:
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


@dataclass(frozen=True)
class Grid:
    """The points to measure, and how long to time each (checked when made)."""

    shapes: tuple[tuple[int, int], ...] = ((1024, 1024), (4096, 4096))
    batches: tuple[int, ...] = (1, 64, 1024)
    sparsities: tuple[float, ...] = (0, 0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
    activations: tuple[float, ...] = (0.0, 0.5, 0.8)  # fraction of zeros in X
    dtypes: tuple[str, ...] = ("float32", "float64", "int8")
    budget: float = 0.5
    max_repeats: int = 10
    min_seconds: float = 0.05
    rounds: int = 5
    settle: float = 0.5  # at most, before each slice (:func:`settle`)
    seed: int = 0
    implementations: tuple[str, ...] | None = field(default=None)

    def __post_init__(self) -> None:
        def check(ok: bool, name: str, what: str) -> None:
            if not ok:
                raise ParameterError(f"Grid.{name} must be {what}, got {getattr(self, name)!r}")

        def pair(s: object) -> bool:
            return _values(s, is_positive_int) and len(s) == 2

        def fraction(v: object) -> bool:
            return _real(v) and 0 <= v < 1

        check(_values(self.shapes, pair), "shapes", "(in, out) pairs of positive integers")
        check(_values(self.batches, is_positive_int), "batches", "positive integers")
        for name in ("sparsities", "activations"):
            check(_values(getattr(self, name), fraction), name, "in [0, 1)")
        types = ", ".join(TOLERANCE)
        check(_values(self.dtypes, TOLERANCE.__contains__), "dtypes", f"among {types}")
        check(_real(self.budget) and self.budget > 0, "budget", "a positive number of seconds")
        for name in ("min_seconds", "settle"):
            value = getattr(self, name)
            check(_real(value) and value >= 0, name, "a number of seconds, not negative")
        check(is_positive_int(self.max_repeats), "max_repeats", "a positive integer")
        check(is_positive_int(self.rounds), "rounds", "a positive integer")
        if self.implementations is not None:
            known = {name for dtype in TOLERANCE for name in implementations(dtype)}
            unknown = set(self.implementations) - known
            check(not unknown, "implementations", f"among {sorted(known)} on this machine")

    def points(self) -> list[tuple]:
        """``(shape, batch, sparsity, activation, dtype)``, the value type innermost
        so each point's data are made once for all value types."""
        return [
            (s, b, p, a, d)
            for s in self.shapes
            for b in self.batches
            for a in self.activations
            for p in self.sparsities
            for d in self.dtypes
        ]


DEFAULT_GRID = Grid()
QUICK_GRID = Grid(
    shapes=((1024, 1024),),
    batches=(64,),
    sparsities=(0, 0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.999),
    activations=(0.0, 0.8),
    dtypes=("float32", "int8"),
    budget=0.3,
    max_repeats=7,
)


def _data(shape, batch, sparsity, activation, seed):
    rng = np.random.default_rng(seed)
    n_in, n_out = shape
    w = rng.normal(size=(n_in, n_out)) / math.sqrt(n_in)
    w[rng.random(w.shape) < sparsity] = 0
    x = np.abs(rng.normal(size=(batch, n_in)))
    x[rng.random(x.shape) < activation] = 0
    return w, x


class Timing(NamedTuple):
    """One implementation's timing by :func:`time_in_turn` (seconds)."""

    output: object  # of its last call
    median: float
    iqr: float
    repeats: int
    #: the median of each round's calls, NaN for a round it sat out
    rounds: tuple[float, ...]


def time_in_turn(runs: dict[str, Callable[[], object]], grid: Grid) -> dict[str, Timing]:
    """Time ``runs`` together, round by round; return each one's :class:`Timing`.

    Each is warmed up (untimed): one call, and a second (which tells the call's
    time) when the first took less than a slice. Each of ``grid.rounds`` rounds
    then gives each a slice of repeats: until ``budget / rounds`` seconds of
    calls, or once it has made ``max_repeats / rounds`` repeats (rounded up)
    and spent ``min_seconds / rounds``, whichever comes first; a call that has
    used its whole ``budget`` sits the remaining rounds out. Over the rounds
    that makes as many repeats as one uninterrupted loop with the same limits
    would (a 0.19 s call: 3; a 0.1 ms call: ~500), spread over the time all
    of them take. Every other round runs backwards, so a drift meets every
    call alike. The process's threads :func:`settle` before every slice.

    Calls shorter than ``BURST`` that leave no thread spinning (``settle``
    after the warm-up waited at most ``SPIN_WAIT``) share one slice: each in
    turn makes a burst of calls of about ``BURST`` seconds, until every one
    has made its slice's repeats. The machine's speed changes by up to 1.6x
    every few tens of milliseconds, at random, for every call alike (one row
    through 1024x1024 at 99.5 %: gbdnn 14 or 22 us a slice, SciPy 17 or 27
    us), so with a slice of their own a short call's median was the fast or
    the slow speed by the majority of five coin tosses, each call's its own:
    gbdnn's median came out above SciPy's in up to 5 of 25 timings of the same
    point, where slice by slice it took 0.8-0.9x. Sharing a slice, in
    bursts, they meet the same speeds: over five such points, 20 timings each,
    gbdnn's median was above SciPy's 16 times before, 8 after; the memory-bound
    ones (one row through 4096x4096 at 90-95 %) kept theirs (``bench/README.md``,
    twenty-third session). A call that
    leaves threads spinning (a BLAS) would slow the calls after it, and keeps
    a slice of its own.

    A slice or burst of calls shorter than itself starts with one untimed
    call: the first call after the others had run was 2-10x slower (caches
    refilled, threads woken; gbdnn on 64 rows through 1024x1024 at 99 %:
    1.0-1.3 ms, then 0.34-0.55 ms) and in a slice of a few repeats moved the
    median. A call longer than the slice loses ~1 ms of 100 or more to it.

    Each call's median in every round is kept as well (``Timing.rounds``): two
    implementations compared round by round meet the same spells
    (:func:`kernel_choice`).
    """
    outs, last, shared = {}, {}, []
    slice_seconds = grid.budget / grid.rounds
    slice_repeats = math.ceil(grid.max_repeats / grid.rounds)
    slice_minimum = grid.min_seconds / grid.rounds
    settle(grid.settle)
    for name, run in runs.items():
        for _ in range(2):  # a first call (formats built on first use), a second if short
            t0 = time.perf_counter()
            outs[name] = run()
            last[name] = time.perf_counter() - t0
            if last[name] >= slice_seconds:
                break
        if settle(grid.settle) <= SPIN_WAIT and last[name] < BURST:
            shared.append(name)
    # the slices of a round: the short quiet calls' shared one where its first call stands
    slices = [[name] for name in runs if name not in shared]
    if shared:
        slices.insert(list(runs).index(shared[0]), shared)
    times: dict[str, list[float]] = {name: [] for name in runs}
    per_round: dict[str, list[list[float]]] = {name: [] for name in runs}

    def burst(name: str, seconds: float, spent: list) -> bool:
        """Calls of ``name`` for about ``seconds``; whether its slice is done.
        ``spent`` is ``[seconds, calls]`` of its slice so far, updated."""
        run = runs[name]
        if last[name] < min(seconds, slice_seconds):
            run()
        start = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            outs[name] = run()
            t1 = time.perf_counter()
            times[name].append(t1 - t0)
            per_round[name][-1].append(t1 - t0)
            last[name] = t1 - t0
            spent[0] += t1 - t0
            spent[1] += 1
            done = spent[0] >= slice_seconds or (
                spent[1] >= slice_repeats and spent[0] >= slice_minimum
            )
            if done or t1 - start >= seconds:
                return done

    for _ in range(grid.rounds):
        for timed in per_round.values():
            timed.append([])
        for names in slices:
            active = [n for n in names if not (times[n] and sum(times[n]) >= grid.budget)]
            if not active:
                continue
            settle(grid.settle)
            seconds = BURST if len(names) > 1 else math.inf
            spent = {name: [0.0, 0] for name in active}
            while active:
                active = [name for name in active if not burst(name, seconds, spent[name])]
            names.reverse()
        slices.reverse()  # every other round backwards: a drift meets every call alike
    result = {}
    for name, ts in times.items():
        q1, med, q3 = np.percentile(ts, [25, 50, 75])
        rounds = tuple(float(np.median(r)) if r else math.nan for r in per_round[name])
        result[name] = Timing(outs[name], float(med), float(q3 - q1), len(ts), rounds)
    return result


def _key(row: dict) -> tuple:
    return (
        str(row["shape"]),
        int(row["batch"]),
        float(row["sparsity"]),
        float(row["activation"]),
        row["dtype"],
        row["implementation"],
    )


def load_rows(path: str | Path) -> list[dict]:
    """Rows of a CSV written by :func:`run_grid` (numbers parsed)."""
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            for k in ("batch", "repeats", "weight_bytes", "threads"):
                row[k] = int(row[k])
            for k in ("sparsity", "activation", "median_s", "iqr_s", "rel_error", "convert_s"):
                row[k] = float(row[k])
            row["correct"] = row["correct"] == "True"
            # (a grid of an older gbdnn kept no round's median)
            row["round_medians_s"] = [float(v) for v in (row.get("round_medians_s") or "").split()]
            row.setdefault("kernel", "")
            rows.append(row)
    return rows


def _header(csv_path: Path) -> list[str] | None:
    """The columns of ``csv_path`` (None: no file, or an empty one), checked to be a
    grid's: all among ``FIELDS``, with every one each grid wrote."""
    if not csv_path.exists():
        return None
    with open(csv_path, newline="") as f:
        header = next(csv.reader(f), None)
    if header is not None and not (set(FIELDS) - NEWER_FIELDS <= set(header) <= set(FIELDS)):
        raise ValueError(f"{csv_path} is not a crossover grid's CSV: its columns are {header}")
    return header


def run_grid(
    grid: Grid, out_dir: str | Path, *, resume: bool = False, progress: bool = True
) -> list[dict]:
    """Measure every point of ``grid``; write ``crossover.csv`` and ``.json`` in ``out_dir``.

    With ``resume`` the points already in ``crossover.csv`` are skipped and
    new rows are appended; without it an existing file is an error (nothing
    a user measured is overwritten unasked).
    """
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "crossover.csv"
    if csv_path.exists() and not resume:
        raise FileExistsError(f"{csv_path} exists; pass --resume to continue it, or another -o")
    header = _header(csv_path)
    rows = load_rows(csv_path) if header else []
    done = {_key(r) for r in rows}
    env = environment()
    common = {
        "threads": available_cores(),
        "cpu": env["cpu"],
        "blas": blas_name(),
        "versions": json.dumps(env["versions"], sort_keys=True),
    }
    todo = []  # (point, the implementations still to time there)
    for shape, batch, sparsity, activation, dtype in grid.points():
        point = {
            "shape": f"{shape[0]}x{shape[1]}",
            "batch": batch,
            "sparsity": sparsity,
            "activation": activation,
            "dtype": dtype,
        }
        impls = {
            name: prepare
            for name, prepare in implementations(dtype).items()
            if (not grid.implementations or name in grid.implementations)
            and _key({**point, "implementation": name}) not in done
        }
        if impls:
            todo.append((shape, point, impls))
    with (
        open(csv_path, "a", newline="") as f,
        tqdm(
            total=sum(len(impls) for *_, impls in todo),
            desc="crossover grid",
            unit="row",
            disable=not progress,
        ) as bar,
    ):
        # (a grid of an older gbdnn goes on in its own columns)
        writer = csv.DictWriter(f, fieldnames=header or FIELDS, extrasaction="ignore")
        if not header:
            writer.writeheader()
        data_key = None
        for shape, point, impls in todo:
            key = (shape, point["batch"], point["sparsity"], point["activation"])
            if key != data_key:  # made once for every value type
                data_key = key
                w, x = _data(*key, grid.seed)
                ref = x @ w
            dtype = point["dtype"]
            ours = any(name.startswith("gbdnn") for name in impls)
            convert = conversion_seconds(x, dtype) if ours else 0.0
            prepared = {name: prepare(w, x, dtype) for name, prepare in impls.items()}
            timed = time_in_turn({name: p.run for name, p in prepared.items()}, grid)
            for name, p in prepared.items():
                t = timed[name]
                got = p.to_dense(t.output).astype(np.float64)
                err = float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-300))
                row = {
                    **point,
                    "implementation": name,
                    "median_s": t.median,
                    "iqr_s": t.iqr,
                    "repeats": t.repeats,
                    "rel_error": err,
                    "correct": err <= TOLERANCE[dtype],
                    "weight_bytes": p.nbytes() if callable(p.nbytes) else p.nbytes,
                    "convert_s": convert if name.startswith("gbdnn") else 0.0,
                    "round_medians_s": list(t.rounds),
                    "kernel": p.kernel() if p.kernel else "",
                    **common,
                }
                writer.writerow({**row, "round_medians_s": " ".join(map(repr, t.rounds))})
                rows.append(row)
            f.flush()
            bar.update(len(prepared))
    tmp = out_dir / ".crossover.json.tmp"
    tmp.write_text(
        json.dumps(
            {
                "environment": env,
                "blas": blas_name(),
                "grid": asdict(grid),
                "kernel_costs": as_record(current_costs()),  # the automatic choice's
                # (JSON has no NaN: a round sat out is null)
                "rows": [
                    {**r, "round_medians_s": [m if m == m else None for m in r["round_medians_s"]]}
                    for r in rows
                ],
                "crossovers": crossovers(rows),
                "kernel_choice": kernel_choice(rows),
            },
            indent=1,
        )
    )
    os.replace(tmp, out_dir / "crossover.json")
    return rows


def _crossing(sparsities: list[float], mine: list[float], theirs: list[float]) -> float | None:
    """The lowest sparsity from which ``mine`` stays faster, interpolated in log time."""
    faster = [m < t for m, t in zip(mine, theirs, strict=True)]
    if not faster[-1]:
        return None
    i = len(faster) - 1
    while i > 0 and faster[i - 1]:
        i -= 1
    if i == 0:
        return sparsities[0]
    # log(mine/theirs) goes from >= 0 at i-1 to < 0 at i
    d0 = math.log(mine[i - 1] / theirs[i - 1])
    d1 = math.log(mine[i] / theirs[i])
    s0, s1 = sparsities[i - 1], sparsities[i]
    return s0 + (s1 - s0) * d0 / (d0 - d1)


def crossovers(rows: Iterable[dict], ours: str = "gbdnn") -> list[dict]:
    """Where gbdnn overtakes each peer, per (shape, batch, activation, value type).

    ``crossover`` is the interpolated weight sparsity from which gbdnn is the
    faster one, ``None`` ("never") if it is not faster at the sparsest point.
    A dense peer (:data:`~gbdnn.bench.peers.DENSE_PEERS`) does the same work at
    every sparsity, so gbdnn is compared with its median over all the
    sparsities measured (``peer_s``): one slow spell of the peer at one point
    does not move the crossover. Sparse peers are compared point by point
    (``peer_s`` is ``None``).
    """
    rows = list(rows)
    groups: dict[tuple, dict[str, dict[float, float]]] = {}
    for r in rows:
        g = groups.setdefault((r["shape"], r["batch"], r["activation"], r["dtype"]), {})
        g.setdefault(r["implementation"], {})[float(r["sparsity"])] = float(r["median_s"])
    out = []
    for (shape, batch, activation, dtype), impls in groups.items():
        mine_name = next((n for n in impls if n in OURS and n.startswith(ours)), None)
        if mine_name is None:
            continue
        for peer, times in impls.items():
            if peer.startswith("gbdnn"):
                continue
            common = sorted(set(times) & set(impls[mine_name]))
            if not common:
                continue
            pooled = float(np.median(list(times.values()))) if peer in DENSE_PEERS else None
            theirs = [times[s] if pooled is None else pooled for s in common]
            cross = _crossing(common, [impls[mine_name][s] for s in common], theirs)
            out.append(
                {
                    "shape": shape,
                    "batch": batch,
                    "activation": activation,
                    "dtype": dtype,
                    "implementation": mine_name,
                    "peer": peer,
                    "crossover": cross,
                    "peer_s": pooled,
                }
            )
    return out


def paired_ratio(mine: list[float], theirs: list[float]) -> float | None:
    """The median over rounds of ``mine / theirs``, from the rounds both were timed
    in; None where fewer than ``PAIRED_ROUNDS`` were (or none was recorded)."""
    # (NaN: a round sat out; none recorded by an older gbdnn's grid)
    ratios = [m / t for m, t in zip(mine, theirs, strict=False) if m > 0 and t > 0]
    return float(np.median(ratios)) if len(ratios) >= PAIRED_ROUNDS else None


def kernel_choice(rows: Iterable[dict]) -> list[dict]:
    """gbdnn's automatic kernel against each kernel alone, at every point timed with both.

    ``ratio`` is the automatic choice's median time over the faster kernel's:
    1.0 means the choice was as fast as the best kernel, 1.10 that it was 10 %
    slower. ``paired_ratio`` is the median over the rounds of the same ratio
    within each round (:func:`time_in_turn`), where both were timed in at least
    ``PAIRED_ROUNDS`` (else None): the two meet the same spells of the machine
    in a round, which the ratio of whole medians charges to whichever met more
    slow ones. ``auto_kernel`` is the kernel(s) the automatic choice ran (empty
    in a grid of an older gbdnn), and ``pick_ratio`` that kernel's own time alone
    over the faster kernel's (None where it ran another, the dot kernel, or
    several): it judges the pick apart from the noise between two timings of
    one kernel.
    """
    times: dict[tuple, dict[str, dict]] = {}
    for r in rows:  # per value type: "gbdnn" is timed in each
        key = (
            r["shape"],
            int(r["batch"]),
            float(r["activation"]),
            float(r["sparsity"]),
            r["dtype"],
        )
        times.setdefault(key, {})[r["implementation"]] = r
    out = []
    for (shape, batch, activation, sparsity, dtype), t in sorted(times.items()):
        alone = {k: t[f"gbdnn {k} kernel"] for k in KERNEL_CHECKS if f"gbdnn {k} kernel" in t}
        if "gbdnn" not in t or len(alone) < 2:  # (a grid of an older gbdnn timed two)
            continue
        best = min(alone, key=lambda k: float(alone[k]["median_s"]))
        best_s = float(alone[best]["median_s"])
        auto = t["gbdnn"]
        auto_kernel = auto.get("kernel", "")
        ran = alone.get(auto_kernel)
        out.append(
            {
                "shape": shape,
                "batch": batch,
                "activation": activation,
                "sparsity": sparsity,
                "dtype": dtype,
                "auto_s": float(auto["median_s"]),
                "auto_kernel": auto_kernel,
                "pick_ratio": None if ran is None else float(ran["median_s"]) / best_s,
                "best_kernel": best,
                "best_s": best_s,
                "ratio": float(auto["median_s"]) / best_s,
                "paired_ratio": paired_ratio(
                    auto.get("round_medians_s", []), alone[best].get("round_medians_s", [])
                ),
            }
        )
    return out
