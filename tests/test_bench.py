"""The crossover harness: interpolation, grid runs, resume, figures, CLI."""

import dataclasses
import functools
import json
import threading
import time

import numpy as np
import pytest

from gbdnn.bench import Grid, crossovers, kernel_choice, load_rows, plot, run_grid
from gbdnn.bench.crossover import FIELDS, NEWER_FIELDS, _crossing, time_in_turn
from gbdnn.bench.report import kernel_choice_table
from gbdnn.cli import main
from gbdnn.errors import ParameterError
from gbdnn.tuning import KERNELS, settle


def test_crossing_is_interpolated_in_log_time():
    # gbdnn 4x slower at 0.5, 4x faster at 0.9: log-ratio zero half way
    assert _crossing([0.5, 0.9], [4.0, 0.25], [1.0, 1.0]) == pytest.approx(0.7)
    assert _crossing([0.0, 0.5, 0.9], [0.5, 0.5, 0.5], [1.0, 1.0, 1.0]) == 0.0  # always faster
    assert _crossing([0.0, 0.5], [2.0, 2.0], [1.0, 1.0]) is None  # never
    # faster, slower again, then faster: the crossing that lasts
    assert _crossing([0.1, 0.2, 0.3, 0.4], [0.5, 2.0, 2.0, 0.5], [1, 1, 1, 1]) == pytest.approx(
        0.35
    )


def rows_for(times):
    return [
        {
            "shape": "8x8",
            "batch": 1,
            "activation": 0.0,
            "dtype": "float32",
            "implementation": impl,
            "sparsity": s,
            "median_s": t,
        }
        for impl, series in times.items()
        for s, t in series.items()
    ]


def test_crossovers_per_peer():
    rows = rows_for(
        {
            "gbdnn": {0.5: 2.0, 0.9: 0.5},
            "NumPy dense": {0.5: 1.0, 0.9: 1.0},
            "SciPy CSR": {0.5: 0.1, 0.9: 0.1},
        }
    )
    found = {c["peer"]: c["crossover"] for c in crossovers(rows)}
    assert found["NumPy dense"] == pytest.approx(0.7)
    assert found["SciPy CSR"] is None


def test_dense_peer_is_pooled_over_sparsities():
    # NumPy dense slow at 0.5 only (a noisy spell): gbdnn is not faster than its usual
    # 1.0 there, so the crossover stays where the median puts it, not at 0.5
    rows = rows_for(
        {
            "gbdnn": {0.5: 2.0, 0.9: 0.5, 0.99: 0.25},
            "NumPy dense": {0.5: 9.0, 0.9: 1.0, 0.99: 1.0},
            "SciPy CSR": {0.5: 9.0, 0.9: 1.0, 0.99: 1.0},
        }
    )
    found = {c["peer"]: c for c in crossovers(rows)}
    assert found["NumPy dense"]["peer_s"] == 1.0
    assert found["NumPy dense"]["crossover"] == pytest.approx(0.7)
    # a sparse peer's work depends on the sparsity: compared point by point
    assert found["SciPy CSR"]["peer_s"] is None
    assert found["SciPy CSR"]["crossover"] == 0.5


def test_kernel_choice_compares_within_one_value_type():
    # the kernels alone are timed in FP32 only; gbdnn's FP64 time at the same point
    # must not stand in for its FP32 one
    fp32 = rows_for(
        {"gbdnn": {0.9: 1.2}, "gbdnn sparse kernel": {0.9: 1.0}, "gbdnn dense kernel": {0.9: 2.0}}
    )
    rows = [*fp32, dict(rows_for({"gbdnn": {0.9: 5.0}})[0], dtype="float64")]
    (choice,) = kernel_choice(rows)  # (a grid of an older gbdnn, no BLAS kernel alone)
    assert choice["dtype"] == "float32" and choice["best_kernel"] == "sparse"
    assert choice["ratio"] == pytest.approx(1.2)
    (choice,) = kernel_choice([*rows, *rows_for({"gbdnn blas kernel": {0.9: 0.8}})])
    assert choice["best_kernel"] == "blas" and choice["ratio"] == pytest.approx(1.5)


def test_kernel_choice_pairs_the_rounds():
    nan = float("nan")

    def timed(impl, median, rounds):
        (row,) = rows_for({impl: {0.9: median}})
        return dict(row, round_medians_s=rounds)

    # the automatic choice met two slow rounds, the sparse kernel one: 1.5x by the
    # medians, 1.05x within each round
    rows = [
        timed("gbdnn", 1.5, [1.05, 2.1, 1.05, 2.1, 1.05]),
        timed("gbdnn sparse kernel", 1.0, [1.0, 2.0, 1.0, 1.0, 1.0]),
        timed("gbdnn dense kernel", 3.0, [3.0] * 5),
    ]
    (choice,) = kernel_choice(rows)
    assert choice["ratio"] == pytest.approx(1.5)
    assert choice["paired_ratio"] == pytest.approx(1.05)
    # rounds one of them sat out (NaN) are left out; fewer than PAIRED_ROUNDS: None
    rows[0] = timed("gbdnn", 1.5, [1.05, nan, 2.1, nan, 1.05])
    assert kernel_choice(rows)[0]["paired_ratio"] == pytest.approx(1.05)
    rows[0] = timed("gbdnn", 1.5, [1.05, nan, nan, nan, 1.05])
    assert kernel_choice(rows)[0]["paired_ratio"] is None
    rows[0] = timed("gbdnn", 1.5, [1.05, 2.1, 1.05, 2.1, 1.05])
    # the table lists the points over the limit by either ratio first, and says how many
    worse = [dict(r, sparsity=0.99) for r in rows_for({"gbdnn": {0.99: 1.0}})]
    worse += [
        dict(r, round_medians_s=[1.0] * 5)
        for r in rows_for({"gbdnn sparse kernel": {0.99: 0.95}, "gbdnn dense kernel": {0.99: 2}})
    ]
    worse[0]["round_medians_s"] = [1.2] * 5  # 1.05x by the medians, 1.2x paired
    worse[0]["kernel"] = "dense"  # the kernel the automatic choice ran (older grids: none)
    table = kernel_choice_table(kernel_choice([*rows, *worse]))
    assert "(FP32, 2 points timed with each kernel alone): the automatic choice took" in table
    assert "1.50x at worst, 1 point over 1.10x; paired round by round (2 points)" in table
    assert "1.20x at worst, 1 point over 1.10x; the kernel it ran" in table
    # the pick judged by its kernel's own time alone: dense, 2 / 0.95
    assert "timed alone (1 point where it ran one) 2.11x the faster" in table
    lines = [line for line in table.splitlines() if line.startswith("| 8x8")]
    assert lines == [
        "| 8x8 | 1 | 0 % | 90 % | 1.50 | 1.05 | sparse | n/a | n/a |",
        "| 8x8 | 1 | 0 % | 99 % | 1.05 | 1.20 | sparse | dense | 2.11 |",
    ]
    ran = {c["sparsity"]: c["pick_ratio"] for c in kernel_choice([*rows, *worse])}
    assert ran[0.9] is None and ran[0.99] == pytest.approx(2 / 0.95)
    worse[0]["kernel"] = "dot"  # a kernel not timed alone: no pick ratio
    assert kernel_choice(worse)[0]["pick_ratio"] is None


@pytest.fixture
def tiny():
    return Grid(
        shapes=((48, 32),),
        batches=(3,),
        sparsities=(0.0, 0.9),
        activations=(0.0, 0.5),
        dtypes=("float32", "int8"),
        budget=0.01,
        max_repeats=2,
        implementations=("gbdnn", "gbdnn int8", "NumPy dense", "NumPy dense FP32", "SciPy CSR"),
    )


def test_grid_run_resume_and_figures(tmp_path, tiny):
    rows = run_grid(tiny, tmp_path, progress=False)
    # float32: gbdnn, NumPy, SciPy; int8: gbdnn int8, NumPy FP32; 2 x 2 points each
    assert len(rows) == 2 * 2 * 3 + 2 * 2 * 2
    assert all(r["correct"] for r in rows), [r for r in rows if not r["correct"]]
    assert all(r["median_s"] > 0 and r["weight_bytes"] > 0 for r in rows)
    assert {r["blas"] for r in rows} and all(r["threads"] >= 1 for r in rows)
    # gbdnn's rows say which kernel(s) its layer ran, the peers' none
    for r in rows:
        if r["implementation"].startswith("gbdnn"):
            assert r["kernel"] and set(r["kernel"].split("+")) <= set(KERNELS), r
        else:
            assert r["kernel"] == "", r
    saved = load_rows(tmp_path / "crossover.csv")
    assert len(saved) == len(rows) and saved[0]["implementation"] == rows[0]["implementation"]

    def no_nan(constant):
        raise AssertionError(f"{constant} is not JSON")

    report = json.loads((tmp_path / "crossover.json").read_text(), parse_constant=no_nan)
    assert report["environment"]["versions"]["python-graphblas"]
    assert [r["round_medians_s"] for r in report["rows"]] == [
        [m if m == m else None for m in r["round_medians_s"]] for r in rows
    ]
    assert len(report["crossovers"]) == 2 * 2 + 2 * 1
    with pytest.raises(FileExistsError, match="--resume"):
        run_grid(tiny, tmp_path, progress=False)
    again = run_grid(tiny, tmp_path, resume=True, progress=False)
    assert len(again) == len(rows)  # nothing measured twice
    # every row keeps each round's median, read back as numbers
    assert all(len(r["round_medians_s"]) == tiny.rounds for r in saved)
    for back, measured in zip(saved, rows, strict=True):  # (NaN: a round sat out)
        np.testing.assert_array_equal(back["round_medians_s"], measured["round_medians_s"])
    files = plot(again, tmp_path)
    assert {f.suffix for f in files} == {".png", ".svg"} and all(f.stat().st_size for f in files)


def test_resume_goes_on_in_an_older_grids_columns(tmp_path, tiny):
    import csv

    old = dataclasses.replace(tiny, dtypes=("float32",), implementations=("gbdnn", "SciPy CSR"))
    rows = run_grid(old, tmp_path, progress=False)
    path = tmp_path / "crossover.csv"
    # the CSV as a gbdnn that kept no round's median nor kernel wrote it, one point left
    columns = [f for f in FIELDS if f not in NEWER_FIELDS]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows[:-1])
    again = run_grid(old, tmp_path, resume=True, progress=False)
    assert len(again) == len(rows) and again[-1]["round_medians_s"]
    saved = load_rows(path)
    assert len(saved) == len(rows)
    assert all(r["round_medians_s"] == [] and r["kernel"] == "" for r in saved)
    assert path.read_text().splitlines()[0] == ",".join(columns)
    # a CSV that is no grid's is not appended to
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a crossover grid's CSV"):
        run_grid(old, tmp_path, resume=True, progress=False)
    assert path.read_text() == "a,b\n1,2\n"


def test_cli_calibrate_takes_the_median_of_runs(tmp_path, capsys, monkeypatch):
    from gbdnn import tuning

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    seen = []
    costs = tuning.Costs(dot_call=2e-6, dot_split_share=0.25)
    monkeypatch.setattr(tuning, "calibrate", lambda **kwargs: seen.append(kwargs) or costs)
    assert main(["bench", "calibrate", "--runs", "5"]) == 0 and seen == [{"runs": 5}]
    assert main(["bench", "calibrate"]) == 0 and seen[-1] == {}  # calibrate's default
    out = capsys.readouterr().out
    assert "dot_call 2e-06 s," in out and "dot_split_share 0.25," in out  # a fraction
    with pytest.raises(SystemExit):
        main(["bench", "calibrate", "--runs", "0"])
    assert "--runs" in capsys.readouterr().err


def test_cli_bench(tmp_path, capsys, monkeypatch, request):
    from gbdnn import tuning

    request.addfinalizer(tuning.current_costs.cache_clear)  # forget the temporary cache after

    # no costs cached: the command calibrates this machine's first (a small calibration here)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    small = functools.partial(tuning.calibrate, size=256, rows=32, threads=1)
    monkeypatch.setattr(tuning, "calibrate", small)
    tuning.current_costs.cache_clear()
    out = tmp_path / "out"
    argv = [
        "bench",
        "crossover",
        "-o",
        str(out),
        "--shapes",
        "40x24",
        "--batches",
        "2",
        "--sparsities",
        "0,0.9",
        "--activations",
        "0",
        "--dtypes",
        "float32",
        "--budget",
        "0.01",
        "--no-progress",
    ]
    assert main(argv) == 0
    costs = json.loads(tuning.cache_path().read_text())
    captured = capsys.readouterr()
    assert "calibrated this machine's kernel costs" in captured.err
    assert json.loads((out / "crossover.json").read_text())["kernel_costs"] == costs
    text = captured.out
    assert "| 40x24 | 2 | 0 % | float32 | NumPy dense |" in text
    assert (out / "crossover.md").is_file() and (out / "crossover-float32-act0.png").is_file()
    assert main(argv) == 2  # the results exist: refuse to overwrite
    err = capsys.readouterr().err
    assert "--resume" in err and "calibrated" not in err  # the costs are cached now
    with pytest.raises(SystemExit):
        main(["bench", "crossover", "-o", str(out), "--shapes", "40by24"])
    with pytest.raises(SystemExit):
        main(["bench", "crossover", "-o", str(out), "--sparsities", "1.5"])
    with pytest.raises(SystemExit):
        main(["bench", "crossover", "-o", str(out), "--rounds", "0"])
    assert main(["bench", "crossover", "-o", str(tmp_path / "other"), "--budget", "-1"]) == 2
    assert "Grid.budget must be a positive number of seconds" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("shapes", ((1024,),), "pairs of positive integers"),
        ("shapes", (1024, 1024), "pairs of positive integers"),
        ("batches", (0,), "positive integers"),
        ("batches", 64, "positive integers"),
        ("sparsities", (0.5, 1.0), r"in \[0, 1\)"),
        ("activations", (float("nan"),), r"in \[0, 1\)"),
        ("dtypes", ("float16",), "among float64, float32, int8"),
        ("budget", 0, "positive number of seconds"),
        ("min_seconds", -1.0, "not negative"),
        ("settle", float("inf"), "not negative"),
        ("max_repeats", 2.5, "positive integer"),
        ("rounds", 0, "positive integer"),
        ("implementations", ("gbdnn", "Eigen"), "among .*SciPy CSR"),
    ],
)
def test_grid_rejects_bad_settings(field, value, message):
    with pytest.raises(ParameterError, match=f"Grid.{field} must be .*{message}"):
        Grid(**{field: value})


def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_implementations_are_timed_in_turn_round_by_round():
    grid = Grid(budget=1.0, max_repeats=5, min_seconds=0.02, rounds=4, settle=0.3)
    log = []

    def call(name, seconds=0.0, spins=0.0):
        def run():
            log.append(name)
            time.sleep(seconds)
            if spins:  # a thread left spinning, as a BLAS's are
                threading.Thread(target=spin, args=(spins,)).start()
            return log.count(name)

        return run

    runs = {
        "a": call("a"),
        "b": call("b"),
        "long": call("long", 0.004),
        "blas": call("blas", 0.001, spins=0.05),
    }
    timed = time_in_turn(runs, grid)
    # warmed up with two calls each (the first took less than a slice)
    assert log[:8] == ["a", "a", "b", "b", "long", "long", "blas", "blas"]
    blocks = [name for i, name in enumerate(log) if i >= 8 and log[i - 1] != name]
    # the short quiet calls share a slice in bursts, a and b in turn, several bursts each;
    # the long call and the spinning one have a slice each; every other round backwards:
    # ab long blas | blas long ab | ab long blas | blas long ab (a slice's blocks merge
    # with the next round's first)
    slices = [
        b
        for i, b in enumerate(blocks)
        if b in ("long", "blas") or i == 0 or blocks[i - 1] in ("long", "blas")
    ]
    assert ["ab" if s in "ab" else s for s in slices] == [
        *["ab", "long", "blas", "long"] * 2,
        "ab",
    ]
    assert blocks.count("a") >= 2 * grid.rounds and blocks.count("b") >= 2 * grid.rounds
    for name in "ab":
        out, median, iqr, repeats, rounds = timed[name]
        # calls of microseconds: far more than max_repeats, for about min_seconds in all;
        # each burst starts with an untimed call
        assert repeats > grid.max_repeats and log.count(name) > 2 + repeats
        assert out == log.count(name) and 0 < median < 0.001 and iqr >= 0
    out, median, iqr, repeats, rounds = timed["long"]
    # a call of 4 ms: 2 repeats a slice (max_repeats / rounds, rounded up) and 5 ms
    # (min_seconds / rounds): each slice one untimed call and two timed
    assert repeats == 2 * grid.rounds and log.count("long") == 2 + 3 * grid.rounds
    assert 0.004 <= median < 0.01
    # every round's median kept too: each timed in every round here
    for timing in timed.values():
        assert len(timing.rounds) == grid.rounds
        assert all(r > 0 for r in timing.rounds)
    assert min(rounds) <= median <= max(rounds)

    slow_calls = []

    def slow():
        slow_calls.append(1)
        time.sleep(0.01)

    # slow calls stop at max_repeats once min_seconds has passed, or at the budget,
    # whatever the number of rounds
    once = dataclasses.replace(grid, max_repeats=3, min_seconds=0.0, rounds=3)
    assert time_in_turn({"slow": slow}, once)["slow"][3] == 3
    short = dataclasses.replace(grid, budget=0.025, max_repeats=100, min_seconds=1.0, rounds=5)
    slow_calls.clear()
    timing = time_in_turn({"slow": slow}, short)["slow"]
    # calls longer than a slice (5 ms): no untimed call but the first
    assert 2 <= timing.repeats <= 4 and len(slow_calls) == timing.repeats + 1
    # the rounds after the budget was spent sat out: no median (NaN)
    assert sum(r > 0 for r in timing.rounds) == timing.repeats
    assert sum(r != r for r in timing.rounds) == short.rounds - timing.repeats


def test_settle_waits_while_a_thread_of_the_process_is_busy():
    assert settle(2.0) < 0.5  # idle: two quiet steps

    busy = threading.Thread(target=spin, args=(0.3,))
    busy.start()
    waited = settle(2.0)
    busy.join()
    assert 0.2 < waited < 2.0
    busy = threading.Thread(target=spin, args=(1.0,))
    busy.start()
    waited = settle(0.1)  # at most the limit, give or take one step
    busy.join()
    assert waited < 0.5


def test_readme_tables_replace_their_block_only(tmp_path, tiny, monkeypatch):
    import readme_tables

    run_grid(tiny, tmp_path, progress=False)
    csv = str(tmp_path / "crossover.csv")
    text = readme_tables.block(csv)
    n = len(load_rows(csv))
    assert text.startswith(readme_tables.START)
    assert f"{n} measurements; {n} of {n} checked correct" in text
    assert "| float32: shape |" in text and "| int8: shape |" in text
    readme = tmp_path / "README.md"
    readme.write_text(
        f"intro\n\n{readme_tables.START}old\n\n| old |\n\nThis grid was measured on x"
    )
    monkeypatch.setattr("sys.argv", ["readme_tables.py", csv, "--readme", str(readme)])
    readme_tables.main()
    assert readme.read_text() == f"intro\n\n{text}\n\nThis grid was measured on x"
    readme.write_text("no block here")
    with pytest.raises(SystemExit):
        readme_tables.main()
    assert readme.read_text() == "no block here"  # left as it was


def test_kernel_picks_replays_the_automatic_choice(tmp_path, tiny):
    import kernel_picks

    from gbdnn import helper, tuning
    from gbdnn.bench.crossover import _data
    from gbdnn.bench.peers import KERNEL_CHECKS

    grid = dataclasses.replace(
        tiny,
        dtypes=("float32",),
        implementations=("gbdnn", "gbdnn sparse kernel", "gbdnn dense kernel", "gbdnn blas kernel"),
    )
    run_grid(grid, tmp_path, progress=False)
    rows = kernel_picks.picks(str(tmp_path / "crossover.csv"))
    assert len(rows) == 2 * 2
    for r in rows:
        shape, batch, activation, sparsity = r["point"]
        n_in, n_out = (int(v) for v in shape.split("x"))
        w, x = _data((n_in, n_out), batch, sparsity, activation, grid.seed)
        # three rows are one batch, alone with a core to spare if there is one: the
        # cost model's own answer
        expected = tuning.choose(
            "auto",
            batch,
            np.count_nonzero(x),
            n_in,
            n_out,
            np.count_nonzero(w),
            alone=helper.available(),
        )
        assert r["picked"] == {expected: 1}
        assert r["ratio"] > 0 and r["by"] == (
            "own times" if expected in KERNEL_CHECKS else "direct timing"
        )
