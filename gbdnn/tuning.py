"""Which kernel computes ``X W``: a cost model, calibrated once per machine.

Four kernels compute the product of a batch ``X`` (b x in) and a weight ``W``
(in x out, ``nnz(W)`` stored). Each one's time is modelled by a fixed cost per
call (``*_call``; per tile for the dense kernel, see
:func:`gbdnn.kernels.tile_rows`) plus the work it does:

``"sparse"``  :func:`gbdnn.kernels.plus_times`, Gustavson on the sparse rows
              of X: ``sparse_mac * m + sparse_out * e`` for ``m = nnz(X)
              nnz(W) / in`` multiply-adds and ``e`` entries of Z (each costs
              15-50 ns, 25-40x a multiply-add; a model of multiply-adds alone
              was off by up to 20x on random weights). ``e`` is not known
              before the product and depends on the weights' structure
              (random weights: ``b out (1 - exp(-m / (b out)))``; the Graph
              Challenge's: far fewer), so a layer passes the entries per
              multiply-add of its last sparse product (``spread``); before
              any, ``e`` counts as 0. A full X is accumulated into a full
              zero result instead: ``sparse_full_mac * b nnz(W)`` plus
              ``sparse_full_entry * b (in + out)``, SuiteSparse's loop over
              every activation and the zero result (what a product on
              weights with a few entries per row spends its time on), plus
              ``sparse_weight * nnz(W)``, reading W once per call (its loop
              runs over the rows of a batch in vector lanes: 2 ns per
              multiply-add for one row, 0.6 ns for 16, through 1024x1024 and
              2048x2048 at 90 % on one thread). A
              sparse X of at least ``FILL_MIN_ROWS`` rows is made full
              first (``fill_*``, see below) where that is cheaper than
              Gustavson: on weights with a few entries per row, each
              stored activation costs Gustavson far more than a position
              costs the loop over a full X (64 rows through 1024x1024 at
              99.9 %, 20 % of X stored: 0.87 ms on X as stored, 0.28 ms on
              X full).
``"dense"``   :func:`gbdnn.kernels.plus_times_dense`, ``W' X'`` into a full
              result: ``dense_mac * b16 nnz(W)``, ``b16`` the batch padded to
              whole tiles, plus ``dense_entry * b16 (in + out)`` for
              making ``X'`` and ``Z`` (a transpose in, and one out for
              batches of more than one tile). A batch that runs alone with a
              core to spare (:func:`gbdnn.kernels.spare_core`) shares each
              tile's product with the helper thread where that takes at most
              ``SPLIT_MAX_RATIO`` of one thread's time (:func:`dense_splits`):
              ``split_call`` per tile (the hand-over), ``dense_split_entry``
              per entry of ``X'`` and ``Z'`` (the tiles crossing between the
              cores), and ``dense_split_share`` of one thread's time. This is
              part of the kernel choice: a tile stays in cache, and the share
              measured on 64-256 rows through 1024- to 4096-wide weights
              60-95 % sparse was 0.53-0.58.
``"dot"``     :func:`gbdnn.kernels.plus_times_dot`, ``X (W')'`` as dot products
              of rows accumulated into a full zero result:
              ``dot_mac * b nnz(W) + dot_entry * b out``, one ``dot_entry``
              per dot product, on one thread like every kernel (see
              :class:`gbdnn.kernels.batch_threads`); for batches of at most
              ``DOT_MAX_ROWS`` full rows (it makes sparse rows full first:
              1.5-4.6x slower than the sparse kernel on one-row inputs with
              50-80 % zeros), and for more than one row only where
              ``nnz(W)`` is at least ``b in`` (else SuiteSparse computes
              each dot product on its own, not ``b`` at a time: 2 and 4 rows
              through 1024x1024 at 99.9 % took 2.1-2.9x the sparse kernel's
              time). It reads W once per row, where the sparse kernel's
              ``sparse_weight`` is once per call: one full row through
              4096x4096 took 0.7x the sparse kernel's time at 99-99.9 %.
              Once picked, it shares a product with the helper thread where
              that is cheaper (:func:`splits`) and the batch runs alone with a
              core to spare (:func:`gbdnn.kernels.spare_core`):
              ``split_call + dot_split_share * work``, the share more than
              half where the two cores contend for memory. The pick itself
              is made on one thread's estimate: what the second core gains
              depends on memory bandwidth, which these in-cache costs do not
              see (one row through 4096x4096: 0.94x one thread's time at 75 %,
              where BLAS was faster than either, 0.68x at 90 %).
``"blas"``    :func:`gbdnn.blas.plus_times_blas`, NumPy's dense BLAS
              (:mod:`gbdnn.blas` says on which threads):
              ``(blas_mac * b + blas_weight) * in * out``; ``blas_weight`` is
              reading the dense weight once per call, what dominates a small
              batch (a matrix-vector product is limited by memory, not by
              arithmetic). Measured with every worker busy, each making its
              own call on one BLAS thread (``blas_weight`` on single rows, on
              BLAS's own threads, as such rows run). A batch that runs alone
              (:func:`gbdnn.kernels.spare_core`) shares a product with the
              helper thread by halves of ``W``'s columns where that pays
              (:func:`blas_splits`): ``blas_alone_share`` of its
              multiply-adds' time (0.51 in one calibration of three runs;
              when BLAS itself ran on both cores, it took 0.44-0.51 of its
              busy time, 1 to 512 rows through 2048- and 4096-wide weights;
              priced as busy, 64 rows through 4096x4096 at 75 % went to the
              dense kernel at 19.5 ms, against BLAS's 11.3). BLAS's cost per
              multiply-add falls with the batch, so ``blas_mac`` is measured
              on the large batches that run with every worker busy
              (``BLAS_ROWS``), and the share is BLAS alone on the
              calibration's ``rows`` against that (0.52 in two calibrations),
              so a batch of that size alone keeps its price. Its read of the
              weight keeps the busy price: calibrated on a weight within the
              L3 cache, ``blas_weight`` is
              2-4x too low for one beyond it (one row through 4096x4096 FP32,
              64 MB, alone: 1.3e-10 s a weight; calibrated, busy: 6-11e-11),
              and halved it sent one row through 4096x4096 at 90 % to BLAS
              (2.1 ms) instead of the shared dot kernel (0.5-0.6 ms).

Every kernel but Gustavson reads ``X`` full: a sparse ``X`` is made full
first, ``fill_call + fill_entry * b in`` more (:func:`gbdnn.kernels.dense_rows`).
``gbdnn bench crossover`` reports how close the choice comes to the faster
kernel at every point.

Each layer picks the cheapest for every batch, from the batch's size and
density and what its earlier sparse products made (``spread``): the same
input may go to another kernel on a later call. Where several kernels come
within ``TRIAL_MARGIN`` of the cheapest (:func:`contenders`), a layer on the
automatic path times them on the first batch of that kind instead
(:func:`trial`) and keeps the fastest (:meth:`gbdnn.layers.Product.product`):
these in-cache costs misjudge weights beyond the L3 cache, for every kernel.

The kernels sum in different orders (SuiteSparse picks its internal method by
the operands' formats), so results of different kernels agree to rounding, not
bit for bit. A layer with a fixed ``path`` (``"sparse"``, ``"dense"`` or
``"dot"``) gives bit-identical results for any batch size and thread count; BLAS
may round differently for different batch shapes.

The default costs are :func:`calibrate`'s on one of the project's 2-core
machines, an AMD EPYC (2048-wide layers, not the benchmark grid's sizes; each
the median of six runs; ``split_call`` and ``dot_split_share`` of three;
``dense_split_*`` and ``blas_alone_share`` of two calibrations of three runs each,
in a slow spell of the machine). Machines differ by more than their speed: the
2-core Xeons of earlier measurements took 4x as long per multiply-add of the
sparse kernel's loop over a full ``X`` and per weight of BLAS's read of ``W``,
2.7x per multiply-add of the dense kernel, 2x of BLAS's. Run
:func:`calibrate` (or ``gbdnn bench calibrate``; ``gbdnn bench crossover``
does so when nothing is cached) to measure this machine's and cache them in
``$XDG_CACHE_HOME/gbdnn/costs.json`` (``~/.cache`` by default), where gbdnn
reads them from then on.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, astuple, dataclass, fields, replace
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from graphblas import Matrix

from . import helper
from .errors import CacheWarning, ParameterError
from .kernels import (
    batch_threads,
    padded_width,
    plus_times,
    recycle,
    release,
    spare_core,
    tile_rows,
)

KERNELS = ("sparse", "dense", "dot", "blas")
PATHS = ("auto", *KERNELS)
#: The dot kernel is for batches of at most this many rows: it computes every one
#: of the ``b x out`` dot products, stored weights or not (64 rows through a
#: 1024x1024 layer at 99.9 % sparsity took 11x the sparse kernel's product; 16 rows
#: through 4096x4096 at 90-99.9 % 1.5-2.1x the faster of the sparse and dense
#: kernels, the dot kernel then on two threads; 8 rows 0.74-0.97x, but 3.7x through
#: 1024x1024 at 99.9 %).
DOT_MAX_ROWS = 4
#: The sparse kernel makes a sparse X full first only for batches of at least this many
#: rows: a product of a few full rows reads all of W per call, which the full-X costs,
#: measured on batches of 128 rows, leave out (one row 20 % stored: 1.5-2.3x Gustavson's
#: time through 1024x1024 at 95-99.9 %, 1.8x through 4096x4096 at 99.9 %; 8 rows: even).
FILL_MIN_ROWS = 8
#: The dot kernel shares a product with the helper thread only where the model expects
#: at most this fraction of one thread's time: near the line a mistaken split cost more
#: (one row through 4096x4096 at 98 %: 1.2-1.5x one thread's time) than a missed one
#: saved (97 %: 0.95x), and calibrations on one machine put the line on either side of
#: 98 % (``bench/README.md``).
SPLIT_MAX_RATIO = 0.85
#: A batch alone shares a BLAS product with the helper thread only where the hand-over
#: (``split_call``) is at most this share of the shared product's time. BLAS's own
#: threads already use both cores and start hot from the last call, so the halves gain
#: only by leaving no BLAS threads spinning on the helper's core: timed in a loop, 16
#: and 64 rows through 1024x1024 took 1.09-1.15x their time on BLAS's own threads, and
#: in a model the next layer there kept to one thread (1.17x the model's time); 4 to
#: 1024 rows through 4096x4096 took 0.81-1.01x, and 64 rows through a model with a
#: shared dense layer next 0.83x (``bench/README.md``).
BLAS_HANDOVER_SHARE = 0.1
#: Rows per worker of BLAS's calibration with every worker busy: its cost per
#: multiply-add falls with the batch, and batches run so are large (inputs of 30 ms of
#: work or more, ``AUTO_BATCH_ENTRIES`` entries a batch). Calibrated on 128 rows
#: through 2048x2048, BLAS was priced at 209 ms for 512-row batches through 4096x4096
#: at 75 % (measured 175) and the dense kernel at 207 (measured 209): the dense kernel
#: was picked (``bench/README.md``).
BLAS_ROWS = 512
#: A layer on the automatic path times, on the batch itself, every kernel whose
#: estimate comes within this factor of the cheapest's (:func:`contenders`): the
#: model's errors on weights beyond the L3 cache reached 1.3x (64 rows through
#: 4096x4096 at 75-80 %: the shared dense kernel priced at 15.8 / 12.8 ms, BLAS at
#: 12.5; measured 12.9 / 11.0 against 13.6 / 13.9).
TRIAL_MARGIN = 1.5
#: ... where the cheapest estimate is at least this: a trial of shorter calls would
#: be decided by the machine's noise, and their kernels' times lie closer together.
TRIAL_MIN_SECONDS = 5e-4
#: A trial times each kernel in this many rounds of this many calls, after an untimed
#: one, the rounds apart so that a slow spell of the machine (its speed changes by up
#: to 1.6x over tens of milliseconds) weighs on each kernel alike.
TRIAL_ROUNDS = 2
TRIAL_CALLS = 2
#: A sparse batch is priced at its entries and its layer's ``spread`` rounded to this
#: many significant bits (at most 3.2 % off, :func:`coarse`): exact, each sparse batch
#: of a network asked a new question, and pricing it anew (its answer not cached)
#: took 3-4 us a layer; one new row a call through four 1024-wide layers at 90 % took
#: 1.06-1.08x the time (``bench/README.md``).
COARSE_BITS = 5
#: Seconds of each step of :func:`settle`, and the share of one core under which
#: the process counts as idle during a step.
IDLE_STEP = 0.005
IDLE_CORES = 0.25
#: A trial of a batch alone waits at most this long for the process to fall idle
#: before each round (:func:`settle`).
TRIAL_SETTLE = 0.3
#: :func:`calibrate` takes the median of each cost over this many calibrations.
CALIBRATE_RUNS = 3
#: :func:`calibrate` measures on layers at least this wide.
CALIBRATE_MIN_SIZE = 256
#: Calls of one kernel in a turn of :func:`_calls_seconds`.
CALLS_PER_TURN = 8
#: The version of the kernels whose costs a cache holds (saved with them), and the
#: costs each version changed: a cache of an older version lacks those, measured on
#: the kernel they no longer describe. 2: the dot kernel accumulates into a full zero
#: result (its cost per dot product fell 100x). 3: BLAS is calibrated on ``BLAS_ROWS``
#: rows (its cost per multiply-add 0.81x the 128-row one), ``blas_alone_share`` taken
#: against that. 4: BLAS's threads are chosen by the product (:mod:`gbdnn.blas`): one
#: BLAS thread per batch thread, a batch alone shared with the helper thread.
KERNELS_VERSION = 4
CHANGED_COSTS = {
    2: ("dot_mac", "dot_entry", "dot_call"),
    3: ("blas_mac", "blas_weight", "blas_alone_share"),
    4: ("blas_mac", "blas_weight", "blas_alone_share", "blas_call"),
}


@dataclass(frozen=True)
class Costs:
    """Wall seconds per call and per unit of work of each kernel, every worker busy
    (as in predict); the ``*_share`` costs are fractions (of the dot and dense
    kernels' time on one thread, of BLAS's multiply-adds' time with every worker
    busy)."""

    sparse_mac: float = 6.3e-10
    sparse_out: float = 1.6e-08
    sparse_full_mac: float = 2.8e-10
    sparse_full_entry: float = 2.5e-10
    sparse_weight: float = 3.4e-10
    fill_entry: float = 1.3e-09
    dense_mac: float = 7.7e-11
    dense_entry: float = 3.7e-10
    dot_mac: float = 4e-10
    dot_entry: float = 3.8e-11
    blas_mac: float = 2e-11
    blas_weight: float = 6.6e-11
    sparse_call: float = 6.2e-06
    dense_call: float = 3.1e-05
    fill_call: float = 1.1e-05
    dot_call: float = 6.5e-06
    split_call: float = 6.6e-05
    dot_split_share: float = 0.52
    dense_split_entry: float = 5.4e-10
    dense_split_share: float = 0.56
    blas_call: float = 1e-05
    blas_alone_share: float = 0.51

    def __post_init__(self) -> None:
        # every batch looks its kernel choice up by these costs: hash them once (1 us)
        object.__setattr__(self, "_hash", hash(astuple(self)))

    def __hash__(self) -> int:
        return self._hash


#: The costs that are fractions, not seconds.
FRACTIONS = ("dot_split_share", "dense_split_share", "blas_alone_share")


def cache_path() -> Path:
    """Where calibrated costs are kept."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "gbdnn" / "costs.json"


@cache
def current_costs() -> Costs:
    """The calibrated costs of this machine if cached, else the defaults.

    A cache that cannot be read, or that lacks costs (one written by an older
    gbdnn, which measured fewer), gives a :class:`~gbdnn.errors.CacheWarning`
    naming them; those take their defaults, the others keep their measured values.
    """
    measured, problem = _read_cache()
    if problem:
        warnings.warn(
            f"{problem}; `gbdnn bench calibrate` measures this machine's",
            CacheWarning,
            stacklevel=2,
        )
    return Costs(**measured)


@lru_cache(maxsize=64)
def blas_typed(costs: Costs, itemsize: int) -> Costs:
    """``costs`` with BLAS's for values of ``itemsize`` bytes: calibrated on FP32, its
    time per multiply-add and per weight read scale with the bytes of a value (half
    as many values per vector register, twice the bytes of ``W`` to read). NumPy,
    4096x4096, FP64 against FP32: 2.4x / 2.4x / 2.0x for 1 / 64 / 1024 rows (the
    default grid); priced as FP32, 1024 FP64 rows through it at 75 % went to BLAS
    (300 ms) instead of the dense kernel (200 ms, ``bench/README.md``)."""
    scale = itemsize / 4
    if scale <= 1:
        return costs
    return replace(costs, blas_mac=costs.blas_mac * scale, blas_weight=costs.blas_weight * scale)


def as_record(costs: Costs) -> dict[str, float | int]:
    """``costs`` as they are cached: each field, and the ``KERNELS_VERSION`` they describe."""
    return {**asdict(costs), "version": KERNELS_VERSION}


def _read_cache() -> tuple[dict[str, float], str | None]:
    """The costs cached for this machine, and what is wrong with the cache (None: nothing;
    no cache at all is not a problem, just no costs)."""
    path = cache_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}, None
    except (OSError, ValueError) as exc:
        return {}, f"cannot read the cached costs {path} ({exc}): using the defaults"
    if not isinstance(data, dict):
        data = {}
    version = data.get("version")
    if type(version) is not int:  # no version (the first caches), or not a number
        version = 1
    stale = {name for v, names in CHANGED_COSTS.items() if v > version for name in names}
    measured = {
        f.name: float(data[f.name])
        for f in fields(Costs)
        if f.name not in stale
        and type(data.get(f.name)) in (int, float)
        and 0 < data[f.name] < math.inf
    }
    missing = [f.name for f in fields(Costs) if f.name not in measured]
    if missing:
        return measured, (
            f"the cached costs {path} lack {', '.join(missing)} (missing, not a positive "
            "number, or measured on an older gbdnn's kernel): using their defaults"
        )
    return measured, None


def calibrate_once() -> bool:
    """Calibrate this machine's costs (:func:`calibrate`, a few seconds) unless a
    complete set is cached; True if it did.

    ``gbdnn bench crossover`` calls it first, so the automatic kernel choice it
    times is this machine's, measured once and cached.
    """
    measured, _ = _read_cache()
    if len(measured) == len(fields(Costs)):
        return False
    calibrate(save=True)
    return True


def coarse(value: float) -> float:
    """``value`` rounded to ``COARSE_BITS`` significant bits."""
    mantissa, exponent = math.frexp(value)
    return math.ldexp(round(mantissa * (1 << COARSE_BITS)), exponent - COARSE_BITS)


def priced_entries(nnz_x: int, nrows: int, n_in: int) -> int:
    """The entries of a batch as the kernel choice prices them: a full batch's
    exactly, a sparse one's rounded to ``COARSE_BITS`` significant bits (halves up,
    in integers: 0.19 us a call, through :func:`coarse` 0.32), still fewer than full."""
    full = nrows * n_in
    shift = nnz_x.bit_length() - COARSE_BITS
    if nnz_x >= full or shift <= 0:
        return nnz_x
    # the leading COARSE_BITS + 1 bits, rounded to COARSE_BITS
    return min((((nnz_x >> (shift - 1)) + 1) >> 1) << shift, full - 1)


def multiply_adds(nnz_x: int, nnz_w: int, n_in: int) -> float:
    """Multiply-adds of the sparse kernel's Gustavson method: ``nnz(X) nnz(W) / in``
    (each stored activation meets the stored weights of one row of ``W``, on average)."""
    return nnz_x * nnz_w / max(n_in, 1)


def estimates(
    nrows: int,
    nnz_x: int,
    n_in: int,
    n_out: int,
    nnz_w: int,
    costs: Costs | None = None,
    spread: float | None = None,
    alone: bool = False,
) -> dict[str, float]:
    """Modelled seconds of each kernel for one product (see the module documentation).

    ``spread``: entries of Z per multiply-add of the sparse kernel, as last
    seen on this layer (None: not seen, counted as 0). ``alone``: the batch runs
    alone with a core to spare, BLAS sharing it with the helper thread.
    """
    c = costs or current_costs()
    full = nnz_x == nrows * n_in
    fill = _fill_seconds(nrows, nnz_x, n_in, c)
    dense = _dense_seconds(nrows, n_in, n_out, nnz_w, c)
    if alone and dense_splits(nrows, n_in, n_out, nnz_w, c):
        dense = _dense_shared(nrows, n_in, n_out, dense, c)
    return {
        "sparse": c.sparse_call + min(_sparse_seconds(nrows, nnz_x, n_in, n_out, nnz_w, c, spread)),
        "dense": fill + dense,
        "dot": c.dot_call + _dot_seconds(nrows, n_out, nnz_w, c)
        if nrows <= DOT_MAX_ROWS and full and (nrows == 1 or nnz_w >= nrows * n_in)
        else float("inf"),
        "blas": c.blas_call + fill + _blas_seconds(nrows, n_in, n_out, c, alone),
    }


def _blas_seconds(nrows: int, n_in: int, n_out: int, c: Costs, alone: bool = False) -> float:
    """BLAS's work, its fixed cost left out: with every worker busy, or for a batch
    alone ``blas_alone_share`` of its multiply-adds' time (not of its read of W:
    calibrated on a weight in the L3 cache, it is 2-4x too low for one out of it)."""
    share = c.blas_alone_share if alone else 1.0
    return (share * c.blas_mac * nrows + c.blas_weight) * n_in * n_out


def _tiles(nrows: int, n_in: int, n_out: int) -> int:
    """Tiles of the dense kernel for ``nrows`` rows (FP32, :func:`gbdnn.kernels.tile_rows`)."""
    return -(-nrows // tile_rows(n_in, n_out, 4))


def _dense_seconds(nrows: int, n_in: int, n_out: int, nnz_w: int, c: Costs) -> float:
    """The dense kernel's time on one thread, a full ``X``."""
    return c.dense_call * _tiles(nrows, n_in, n_out) + (
        c.dense_mac * nnz_w + c.dense_entry * (n_in + n_out)
    ) * padded_width(nrows)


def _dense_shared(nrows: int, n_in: int, n_out: int, one: float, c: Costs) -> float:
    """The dense kernel's time shared with the helper thread, ``one`` on one thread: a
    hand-over per tile, the tiles crossing between the cores, a share of the rest."""
    moved = padded_width(nrows) * (n_in + n_out)
    return (
        c.split_call * _tiles(nrows, n_in, n_out)
        + c.dense_split_entry * moved
        + c.dense_split_share * one
    )


@lru_cache(maxsize=4096)
def dense_splits(nrows: int, n_in: int, n_out: int, nnz_w: int, costs: Costs) -> bool:
    """Whether the dense kernel shares a product with the helper thread, given a core
    to spare (``W'`` in halves, :func:`gbdnn.kernels.plus_times_dense`): where that
    takes at most ``SPLIT_MAX_RATIO`` of its time on one thread (see the module
    documentation). Measured: 64 rows through 4096x4096 at 90 % took 0.61x the
    time on one thread, at 99 % 1.07x; 16 rows through 1024x1024 at 90 % 1.46x."""
    one = _dense_seconds(nrows, n_in, n_out, nnz_w, costs)
    shared = _dense_shared(nrows, n_in, n_out, one, costs)
    return n_out >= 2 and shared <= SPLIT_MAX_RATIO * one


def _dot_seconds(nrows: int, n_out: int, nnz_w: int, c: Costs) -> float:
    """The dot kernel's work on one thread, its fixed cost left out."""
    return (c.dot_mac * nnz_w + c.dot_entry * n_out) * nrows


@lru_cache(maxsize=4096)
def blas_splits(nrows: int, n_in: int, n_out: int, costs: Costs) -> bool:
    """Whether BLAS shares a product with the helper thread, given a core to spare
    (``threads="two"`` of :func:`gbdnn.blas.plus_times_blas`, ``W`` in halves by
    columns): where ``split_call`` and ``blas_alone_share`` of the work cost at most
    ``SPLIT_MAX_RATIO`` of the work on one thread, and ``split_call`` is at most
    ``BLAS_HANDOVER_SHARE`` of that. Else the product keeps BLAS's own threads,
    which start quicker than the helper: one row through 1024x1024 FP32 took 56 us
    on them, 71 on one thread, 140 in halves (``bench/README.md``)."""
    work = _blas_seconds(nrows, n_in, n_out, costs)
    shared = costs.split_call + costs.blas_alone_share * work
    return (
        n_out >= 2
        and shared <= SPLIT_MAX_RATIO * work
        and costs.split_call <= BLAS_HANDOVER_SHARE * shared
    )


@lru_cache(maxsize=4096)
def splits(nrows: int, n_out: int, nnz_w: int, costs: Costs) -> bool:
    """Whether the dot kernel shares a product with the helper thread, given a core to
    spare (:func:`gbdnn.kernels.plus_times_dot_halves`): where ``split_call`` and
    the share of the work that the caller waits for cost at most ``SPLIT_MAX_RATIO``
    of the whole work on one thread (the work as in cache: a large weight's is
    underestimated, so a product near the line stays on one thread)."""
    dot = _dot_seconds(nrows, n_out, nnz_w, costs)
    shared = costs.split_call + costs.dot_split_share * dot
    return n_out >= 2 and shared <= SPLIT_MAX_RATIO * dot


def _sparse_seconds(
    nrows: int,
    nnz_x: int,
    n_in: int,
    n_out: int,
    nnz_w: int,
    c: Costs,
    spread: float | None,
) -> tuple[float, float]:
    """The sparse kernel's work: (Gustavson on X as stored, X made full and accumulated
    into a full zero Z); the same for a full X. Below ``FILL_MIN_ROWS`` rows a sparse X
    is never made full (infinite)."""
    full = (
        c.sparse_weight * nnz_w
        + (c.sparse_full_mac * nnz_w + c.sparse_full_entry * (n_in + n_out)) * nrows
    )
    if nnz_x == nrows * n_in:
        return full, full
    macs = multiply_adds(nnz_x, nnz_w, n_in)
    entries = min(macs * (spread or 0.0), nrows * n_out)
    gustavson = c.sparse_mac * macs + c.sparse_out * entries
    if nrows < FILL_MIN_ROWS:
        return gustavson, float("inf")
    return gustavson, full + _fill_seconds(nrows, nnz_x, n_in, c)


def _fill_seconds(nrows: int, nnz_x: int, n_in: int, c: Costs) -> float:
    """Making ``X`` full (:func:`gbdnn.kernels.dense_rows`), nothing if it is."""
    return 0.0 if nnz_x == nrows * n_in else c.fill_call + c.fill_entry * nrows * n_in


def fills(
    nrows: int,
    nnz_x: int,
    n_in: int,
    n_out: int,
    nnz_w: int,
    costs: Costs,
    spread: float | None = None,
) -> bool:
    """Whether the sparse kernel makes a sparse ``X`` full first (see the module
    documentation): bit for bit the same result, as zero terms add nothing."""
    if nrows < FILL_MIN_ROWS:
        return False
    priced = priced_entries(nnz_x, nrows, n_in)
    return _fills(nrows, priced, n_in, n_out, nnz_w, costs, spread)


@lru_cache(maxsize=4096)
def _fills(*question: Any) -> bool:
    """:func:`fills` of a batch priced (:func:`_sparse_seconds`' arguments), remembered."""
    gustavson, filled = _sparse_seconds(*question)
    return filled < gustavson


def choose(
    path: str,
    nrows: int,
    nnz_x: int,
    n_in: int,
    n_out: int,
    nnz_w: int,
    costs: Costs | None = None,
    *,
    kernels: tuple[str, ...] = KERNELS,
    spread: float | None = None,
    alone: bool = False,
) -> str:
    """The kernel (one of ``KERNELS``) for one product.

    ``kernels`` limits the choice (integer layers have no BLAS kernel);
    ``spread`` and ``alone`` are passed to :func:`estimates`.
    """
    if path in kernels:
        return path
    if path != "auto":
        raise ParameterError(f"path {path!r} is not one of this layer's kernels {kernels}")
    costs = costs or current_costs()
    return _ranked(nrows, nnz_x, n_in, n_out, nnz_w, costs, kernels, spread, alone)[0][0]


@lru_cache(maxsize=4096)
def _ranked(
    nrows: int,
    nnz_x: int,
    n_in: int,
    n_out: int,
    nnz_w: int,
    costs: Costs,
    kernels: tuple[str, ...],
    spread: float | None,
    alone: bool,
) -> tuple[tuple[str, float], ...]:
    """``kernels`` and their estimates, the cheapest first, remembered: a layer asks
    the same question for every batch of the same shape, and the estimate was a
    tenth of a one-row call."""
    estimate = estimates(nrows, nnz_x, n_in, n_out, nnz_w, costs, spread, alone)
    return tuple(sorted(((k, estimate[k]) for k in kernels), key=lambda ke: ke[1]))


def contenders(
    nrows: int,
    nnz_x: int,
    dims: tuple[int, int, int],
    costs: Costs,
    *,
    kernels: tuple[str, ...] = KERNELS,
    spread: float | None = None,
    alone: bool = False,
) -> tuple[str, ...]:
    """The kernels worth timing on the batch itself (:func:`trial`), cheapest
    estimate first: those within ``TRIAL_MARGIN`` of the cheapest, where that
    takes at least ``TRIAL_MIN_SECONDS``. Fewer than two: nothing to try.

    ``dims`` is the weight's ``(in, out, nnz)``; the rest as for :func:`choose`.
    """
    if len(dims) != 3:
        raise ParameterError(f"dims must be the weight's (in, out, nnz), got {dims!r}")
    ranked = _ranked(nrows, nnz_x, *dims, costs, kernels, spread, alone)
    least = ranked[0][1]
    if least < TRIAL_MIN_SECONDS:
        return (ranked[0][0],)
    return tuple(k for k, seconds in ranked if seconds <= TRIAL_MARGIN * least)


def trial(calls: dict[str, Callable[[], Matrix]]) -> tuple[str, Matrix]:
    """The fastest of ``calls`` (``kernel: product``) and its result, every other
    result released.

    In each of ``TRIAL_ROUNDS`` rounds, each call runs once untimed (the first
    builds the weight copy its kernel needs), then ``TRIAL_CALLS`` times; the
    fastest median wins. BLAS runs last in a round: OpenBLAS's threads spin for
    about 0.1 s after its last call and slow what runs beside them (64 rows
    through 4096x4096 at 80 %: the dense kernel shared with the helper thread
    took 16.6 ms within 50 ms of a BLAS product, 9.4 ms 0.1 s later), and a batch
    alone waits for them to stop (:func:`settle`) before each round.
    """
    if not calls:
        raise ParameterError("trial needs at least one call to time, got none")
    order = sorted(calls, key=lambda name: name == "blas")
    times: dict[str, list[float]] = {name: [] for name in calls}
    last: dict[str, Matrix] = {}
    for _ in range(TRIAL_ROUNDS):
        if spare_core():
            settle(TRIAL_SETTLE)
        for name in order:
            for timed in (False, *[True] * TRIAL_CALLS):
                if name in last:
                    release(last.pop(name))
                start = time.perf_counter()
                last[name] = calls[name]()
                if timed:
                    times[name].append(time.perf_counter() - start)
    best = min(times, key=lambda name: float(np.median(times[name])))
    for name, out in last.items():
        if name != best:
            release(out)
    return best, last[best]


def settle(limit: float) -> float:
    """Wait until this process's threads are idle, at most ``limit`` seconds; return the wait.

    A thread pool keeps its threads spinning after its last call, and whatever
    runs next shares the cores with them: after NumPy's OpenBLAS products the
    process used 0.8-1.6 cores through ~130 ms of sleep (PyTorch ~10 ms,
    SuiteSparse and SciPy none), and gbdnn on 1024 rows through 4096x4096 at
    90 % took 182-218 ms within 10 ms of a NumPy product, 143-186 ms 0.1-0.3 s
    later.
    The process counts as idle after two steps of ``IDLE_STEP`` seconds in
    which it used under ``IDLE_CORES`` of a core.
    """
    start = time.perf_counter()
    quiet = 0
    while quiet < 2 and (now := time.perf_counter()) - start < limit:
        cpu = time.process_time()
        time.sleep(IDLE_STEP)
        used = (time.process_time() - cpu) / (time.perf_counter() - now)
        quiet = quiet + 1 if used < IDLE_CORES else 0
    return time.perf_counter() - start


def _freeing(kernel):
    """``kernel`` whose result is freed at once, as :func:`gbdnn.runner.run` frees what a
    batch no longer needs: a product of 128 rows through 2048x2048 at 99.8 % took 0.47
    or 1.0 ms by turns, as its dropped results were left to Python's cyclic collector
    (python-graphblas issue 559) and their memory came back to the allocator in heaps."""

    def call(x):
        out = kernel(x)
        if isinstance(out, Matrix):
            release(out)
        else:  # an array (making X full): kept for reuse, as the kernels keep theirs
            recycle(out)

    return call


def _seconds(kernel, inputs, repeats: int = 15) -> float:
    """Wall seconds of one call with one input per worker, all workers busy."""
    from concurrent.futures import ThreadPoolExecutor

    kernel = _freeing(kernel)

    def call(x):
        with batch_threads():  # as in predict
            kernel(x)

    with ThreadPoolExecutor(len(inputs)) as pool:
        list(pool.map(call, inputs))  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            list(pool.map(call, inputs))
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def _gustavson_costs(batches, weights) -> tuple[float, float]:
    """``(sparse_mac, sparse_out)`` fitted to the sparse kernel's time on sparse ``X``
    (a list of inputs, one per worker) through each weight.

    Least squares of the relative errors, neither cost negative. Rows 10 % and 30 %
    dense (SuiteSparse holds the first sparse, the second as a bitmap, as ReLU outputs
    come) through weights 0.2-20 % dense: the time per multiply-add and the time per
    entry of ``Z`` differ between those products. Two products alone, solved exactly,
    gave a cost of zero per multiply-add on an AMD EPYC (2048 x 2048, 10 % dense rows
    through weights 10 % and 0.2 % dense: the first product took less time per entry
    than the second), and the model sent 64 rows with 80 % zeros through 4096 x 4096 at
    75 % to Gustavson at 76 ms, against the dense kernel's 20 ms.
    """
    from scipy.optimize import nnls

    terms, seconds = [], []
    for inputs, w in itertools.product(batches, weights):
        z = plus_times(inputs[0], w)
        terms.append([multiply_adds(inputs[0].nvals, w.nvals, w.nrows), z.nvals])
        release(z)
        seconds.append(_seconds(lambda x, w=w: plus_times(x, w), inputs, repeats=7))
    relative = np.array(terms) / np.array(seconds)[:, None]
    mac, out = nnls(relative, np.ones(len(seconds)))[0]
    return float(max(mac, 1e-14)), float(max(out, 1e-14))


def _call_seconds(kernel, x, repeats: int = 300) -> float:
    """Median wall seconds of one call on this thread, as a one-batch input runs."""
    return _calls_seconds({"call": (kernel, x)}, repeats)["call"]


def _calls_seconds(calls: dict, repeats: int = 300) -> dict[str, float]:
    """:func:`_call_seconds` of each ``name: (kernel, x)`` of ``calls``, the
    calls taken in turns.

    The costs derived from differences of these times are measured together, so
    that a slow spell of the machine weighs on both sides alike: one calibration
    measured every fixed cost 1.55x the others' (one row through a 64-wide layer
    one after another) and the dot kernel's cost per result entry, the difference
    measured afterwards, a third of theirs. Each turn is ``CALLS_PER_TURN`` calls
    of which the first, after the other kernels' turns, is not counted: a
    one-row input calls the same kernel again and again, with its data in cache
    (the dense kernel's first call took 1.3x as long).
    """
    timed = {name: (_freeing(kernel), x) for name, (kernel, x) in calls.items()}
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(-(-repeats // (CALLS_PER_TURN - 1))):
        for name, (kernel, x) in timed.items():
            with batch_threads():
                for _ in range(CALLS_PER_TURN):
                    start = time.perf_counter()
                    kernel(x)
                    times[name].append(time.perf_counter() - start)
            del times[name][-CALLS_PER_TURN]  # the call after the other kernels' turns
    return {name: float(np.median(t)) for name, t in times.items()}


def _split_costs(t: dict[str, float]) -> dict[str, float]:
    """``split_call`` and ``dot_split_share`` from the one-row times ``t`` of the dot
    kernel on one thread (``dot_mid``, ``dot_big``) and shared (``split_mid``,
    ``split_big``): the shared time against the one-thread work, a line through two
    points. A share of at least 1 means never shared."""
    call, share = _line(
        [t[f"dot_{w}"] - t["dot"] for w in ("mid", "big")],
        [t[f"split_{w}"] - t["dot"] for w in ("mid", "big")],
    )
    return {"split_call": call, "dot_split_share": share}


def _line(one: list[float], shared: list[float]) -> tuple[float, float]:
    """``(call, share)``: the line ``shared = call + share * one`` through two products
    timed on one thread (``one``) and shared with the helper thread (``shared``)."""
    share = (shared[1] - shared[0]) / max(one[1] - one[0], 1e-12)
    share = min(max(share, 0.5), 1.0)  # never less than half: two cores
    return max(shared[0] - share * one[0], 1e-12), share


def calibrate(
    *,
    save: bool = True,
    size: int = 2048,
    rows: int = 128,
    threads: int | None = None,
    runs: int = CALIBRATE_RUNS,
) -> Costs:
    """Measure each kernel's costs on this machine: the median of each over ``runs``
    calibrations (:func:`_measure`, 4-5 s each on the project's 2-core machines).

    A single calibration can fall in a slow spell of the machine: one measured
    BLAS's cost per multiply-add at 1.9x, and the sparse kernel's per multiply-add
    over a full batch at 2.0x, what the grid before had measured, and sent 1024
    rows through 1024x1024 at 99.9 % to the dense kernel, 1.4-1.9x the sparse
    kernel's time; the median of three put every sparse and dense pick of the
    next grid within 1.10x (``bench/README.md``, twentieth session).

    Parameters
    ----------
    save : bool, default True
        Cache the result (see :func:`cache_path`) for every later run.
    size, rows : int
        Layer width (at least ``CALIBRATE_MIN_SIZE``) and rows per worker (at
        least 2) of the measurements.
    threads : int, optional
        Workers (default: all cores).
    runs : int, default ``CALIBRATE_RUNS``
        Calibrations whose median is taken, cost by cost.
    """
    from .runner import available_cores, is_positive_int

    # narrower weights hold too few entries at 0.2 % for the fits (size 8 gave a
    # sparse_weight of 2e-19), and the read of W is one row against `rows` rows
    for name, value, least in (
        ("size", size, CALIBRATE_MIN_SIZE),
        ("rows", rows, 2),
        ("runs", runs, 1),
    ):
        if not is_positive_int(value) or value < least:
            raise ParameterError(f"{name} must be an integer of at least {least}, got {value!r}")
    if threads is not None and not is_positive_int(threads):
        raise ParameterError(f"threads must be a positive integer or None, got {threads!r}")
    measured = [_measure(size, rows, threads or available_cores()) for _ in range(runs)]
    costs = Costs(
        **{f.name: float(np.median([getattr(m, f.name) for m in measured])) for f in fields(Costs)}
    )
    if save:
        path = cache_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(as_record(costs)))
        os.replace(tmp, path)
        current_costs.cache_clear()
    return costs


def _measure(size: int, rows: int, threads: int) -> Costs:
    """One calibration (see :func:`calibrate`).

    Each kernel runs on a ``size`` x ``size`` weight, 10 % dense, with every
    worker busy as in :meth:`gbdnn.Sequential.predict`: the dense kernel and
    BLAS on full batches of ``rows`` rows, the sparse kernel on the full
    batches through this weight and a 0.2 % dense one (which separates the
    multiply-adds from the loop over activations), and on 10 % and 30 % dense
    rows through weights 0.2-20 % dense (multiply-adds against result
    entries, fitted over the eight products); making 30 % dense rows full; BLAS once
    more on one-row batches, which measures reading the weight, and on one full
    batch alone (``blas_alone_share``: shared with the helper thread); the sparse
    kernel on one row and on ``rows`` rows of one batch alone, whose
    difference does; the dense kernel once more on an empty weight, which
    measures making ``X'`` and ``Z``. The fixed costs are each kernel's
    median time for one row through a 64 x 64 layer (2 % dense), where the
    work is negligible, on the calling thread (small inputs run as one batch
    there). The dot kernel, for a few rows only, and the sparse kernel's
    reading of ``W`` are measured as one row alone through 1024-wide weights
    5 % and 0.2 % dense, whatever ``size``.
    """
    import graphblas as gb

    from . import kernels
    from .blas import plus_times_blas

    rng = np.random.default_rng(0)

    def weight(density):
        w = ((rng.random((size, size)) < density) * rng.random((size, size))).astype(np.float32)
        m = kernels.sparse_format(gb.Matrix.from_dense(w, missing_value=0))
        return w, m, kernels.sparse_format(m.T.new()), m.nvals

    def batch(nrows, density):
        x = rng.random((nrows, size), dtype=np.float32)
        if density >= 1:
            return gb.Matrix.ss.import_fullr(x, take_ownership=True)
        return gb.Matrix.from_dense(np.where(rng.random(x.shape) < density, x, 0), missing_value=0)

    full = [batch(rows, 1) for _ in range(threads)]
    w, wm, wt, nnz = weight(0.1)
    dense_mac = _seconds(lambda x: kernels.plus_times_dense(x, wt), full) / (rows * nnz)
    few_per_row = weight(0.002)[1]
    sparse_mac, sparse_out = _gustavson_costs(
        [[batch(rows, density) for _ in range(threads)] for density in (0.1, 0.3)],
        [few_per_row, *(weight(density)[1] for density in (0.01, 0.05, 0.2))],
    )
    # full rows: (sparse_full_mac nnz(W) + sparse_full_entry (in + out)) rows. The entry
    # term decides against the dense kernel on weights with a few entries per row, whose
    # products are small and run as one batch: measured so, the two weights separating
    # the terms. The multiply-adds with every worker busy, as the other kernels' work.
    terms = [[rows * weights.nvals, rows * 2 * size] for weights in (wm, few_per_row)]
    seconds = [
        _call_seconds(lambda x, w=weights: kernels.plus_times(x, w), full[0], repeats=50)
        for weights in (wm, few_per_row)
    ]
    sparse_full_entry = max(np.linalg.solve(terms, seconds)[1], 1e-14)
    # the work of a full row, less reading W once per call: one row against `rows` rows,
    # as a small input runs, alone (with every worker busy memory bounds both alike)
    row_alone, batch_alone = (
        _call_seconds(lambda x: kernels.plus_times(x, wm), x, repeats=repeats)
        for x, repeats in ((batch(1, 1), 300), (full[0], 20))
    )
    # with the fixed cost, taken off below
    weight_read = row_alone - (batch_alone - row_alone) / (rows - 1)
    busy = _seconds(lambda x: kernels.plus_times(x, wm), full)
    per_row = max(busy - weight_read, 1e-14) / rows
    sparse_full_mac = max(per_row - sparse_full_entry * 2 * size, 1e-14) / nnz

    # making a sparse X full: rows 30 % dense (a ReLU's output; SuiteSparse holds them as a
    # bitmap), every worker busy
    def fill(x):
        return kernels.dense_rows(x, x.dtype.np_type)

    relu_out = [batch(rows, 0.3) for _ in range(threads)]
    fill_entry = _seconds(fill, relu_out) / (rows * size)
    # the dense kernel's moving of X' and Z: its time on an empty weight, less the fixed cost
    empty = kernels.sparse_format(gb.Matrix(wt.dtype, size, size))
    moving = _call_seconds(lambda x: kernels.plus_times_dense(x, empty), full[0])
    moved = padded_width(rows) * 2 * size  # padded rows x (in + out), as in estimates
    # ... shared with the helper thread, a batch alone: dense_split_entry * moved +
    # dense_split_share * its time on one thread, a line through this weight and a denser
    split, split_costs = helper.available(), {}
    if split:
        dense_calls = {}
        for name, (weights, weights_t) in (("low", (wm, wt)), ("high", weight(0.4)[1:3])):
            for way, wts in (("one", weights_t), ("two", kernels.transposed_halves(weights))):
                dense_calls[f"{way}_{name}"] = (
                    lambda x, wts=wts: kernels.plus_times_dense(x, wts),
                    full[0],
                )
        t = _calls_seconds(dense_calls, repeats=21)
        # the intercept: the hand-overs (split_call each, measured below) and the tiles'
        # crossing between the cores (dense_split_entry per entry moved)
        dense_fixed, share = _line([t["one_low"], t["one_high"]], [t["two_low"], t["two_high"]])
        split_costs = {"dense_split_share": share}
        dense_tiles = _tiles(rows, size, size)

    # (blas_mac * b + blas_weight) * size^2 at b = BLAS_ROWS and b = 1, every worker busy:
    # the large batches on one BLAS thread each, as they run; single rows on BLAS's own
    # threads, taking turns, as a row too small to share with the helper runs (on one
    # BLAS thread each, the read of W measured 0.9-1.9e-10 s a weight in three
    # calibrations, against 6e-11 s for one such call alone); and `rows` rows alone,
    # shared with the helper: blas_alone_share * blas_mac * rows of that (measured before
    # BLAS's own threads run, which spin afterwards on the helper's core)
    def blas(threads):
        return lambda x: plus_times_blas(x, w, threads=threads)

    large = [batch(BLAS_ROWS, 1) for _ in full]
    many = _seconds(blas("one"), large) / size**2
    shared = _seconds(blas("two"), full[:1]) / size**2
    one = _seconds(blas("own"), [batch(1, 1) for _ in full]) / size**2
    blas_mac = max((many - one) / (BLAS_ROWS - 1), 1e-14)
    alone = shared - one
    blas_alone_share = min(max(alone, 1e-14) / (blas_mac * rows), 1.0)
    # fixed costs: one row through a tiny layer, on the caller's thread as small inputs run
    size = 64
    tiny = batch(1, 1)
    w, wm, wt, _ = weight(0.02)
    one_row = {
        "sparse": (lambda x: kernels.plus_times(x, wm), tiny),
        "dense": (lambda x: kernels.plus_times_dense(x, wt), tiny),
        "dot": (lambda x: kernels.plus_times_dot(x, wt), tiny),
        "blas": (blas("own"), tiny),
        "fill": (fill, batch(1, 0.3)),
    }
    # a few rows, where the dot kernel competes with the sparse one: one row alone, as a
    # one-row input runs, through 1024-wide weights 5 % and 0.2 % dense (held in cache)
    # on one thread: dot_mac nnz(W) + dot_entry out, and the sparse kernel's reading of
    # W for one row (2048-wide weights, out of cache, misjudged the two)
    size = 1024
    row = batch(1, 1)
    _, mid, mid_t, mid_nnz = weight(0.05)
    low_t, low_nnz = weight(0.002)[2:]
    one_row |= {
        "dot_mid": (lambda x: kernels.plus_times_dot(x, mid_t), row),
        "dot_low": (lambda x: kernels.plus_times_dot(x, low_t), row),
        "sparse_row": (lambda x: kernels.plus_times(x, mid), row),
    }
    # the same dot products shared with the helper thread, on another core, here and
    # through a weight out of the L2 cache (5 MB, as one row through 4096x4096 at 98 %,
    # where the two cores contend for memory): split_call + dot_split_share * work
    if split:
        big, big_t = weight(0.4)[1:3]
        one_row["dot_big"] = (lambda x: kernels.plus_times_dot(x, big_t), row)
        for name, weights in (("split_mid", mid), ("split_big", big)):
            halves = kernels.transposed_halves(weights)
            one_row[name] = (lambda x, h=halves: kernels.plus_times_dot_halves(x, h), row)
    t = _calls_seconds(one_row)
    calls = {kernel: t[kernel] for kernel in ("sparse", "dense", "dot", "blas", "fill")}
    dense_entry = max(moving - calls["dense"], 1e-12) / moved
    dot_mac = max(t["dot_mid"] - t["dot_low"], 1e-14) / (mid_nnz - low_nnz)
    dot_entry = max(t["dot_low"] - calls["dot"] - dot_mac * low_nnz, 1e-14) / size
    if split:  # (else never used: no core to spare)
        split_costs |= _split_costs(t)
        handed = split_costs["split_call"] * dense_tiles
        split_costs["dense_split_entry"] = max(dense_fixed - handed, 1e-14) / moved
    sparse_row = t["sparse_row"] - calls["sparse"]
    sparse_row -= sparse_full_mac * mid_nnz + sparse_full_entry * 2 * size
    return Costs(
        sparse_mac=float(sparse_mac),
        sparse_out=float(sparse_out),
        sparse_full_mac=float(sparse_full_mac),
        sparse_full_entry=float(sparse_full_entry),
        sparse_weight=float(max(sparse_row, 1e-14) / mid_nnz),
        fill_entry=fill_entry,
        dense_mac=dense_mac,
        dense_entry=dense_entry,
        dot_mac=dot_mac,
        dot_entry=dot_entry,
        blas_mac=blas_mac,
        blas_weight=max(one - blas_mac, 1e-14),
        blas_alone_share=blas_alone_share,
        **{f"{kernel}_call": seconds for kernel, seconds in calls.items()},
        **split_costs,
    )
