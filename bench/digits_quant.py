"""Quantization of the digits MLP: accuracy and bytes at rest for every format.

    python bench/digits_quant.py     # table for the README; bench/results/digits-quant.json

Each format is applied to the dense model and to the 90 % CSP-pruned one
(calibrated on the first 800 training rows). Activations are quantized to 8
bits (unsigned after ReLU) with ranges calibrated on the training rows.
Accuracy is measured on the 719 test images with inference on the gbdnn
engine; bytes are the size of the saved gbdnn model file.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import digits_mlp

import gbdnn
from gbdnn.prune import CSPPruner
from gbdnn.quant import CodebookQuantizer, UniformQuantizer, codebook_model, quantize_model

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "digits-quant.json"


def formats():
    """Name -> function(model, split) giving the quantized model."""
    out = {"FP32": lambda m, s: m}

    def uniform(**kw):
        return lambda m, s: quantize_model(m, s.x_train, UniformQuantizer(**kw))

    out["int8 per-tensor"] = uniform(bits=8)
    out["int8 per-channel"] = uniform(bits=8, per_channel=True)
    for clip in ("max", "percentile", "mse", "sawb"):
        out[f"int4 per-channel, {clip}"] = uniform(bits=4, per_channel=True, clip=clip)
    out["int4 per-channel asymmetric, mse"] = uniform(
        bits=4, per_channel=True, clip="mse", symmetric=False
    )
    for bits in (4, 3):
        out[f"codebook {bits}-bit"] = lambda m, s, bits=bits: codebook_model(
            m, CodebookQuantizer(bits)
        )
    return out


def main() -> int:
    split = digits_mlp.load_split()
    dense = gbdnn.load(digits_mlp.MODEL_PATH)
    pruned = CSPPruner(0.9).fit_transform(dense, split.calibration)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in formats().items():
            row = {"format": name}
            for label, base in (("dense", dense), ("90 % pruned", pruned)):
                model = make(base, split)
                path = gbdnn.save(model, Path(tmp) / f"{len(rows)}-{label[:2]}.npz")
                row[label] = digits_mlp.accuracy(model, split.x_test, split.y_test)
                row[f"{label} bytes"] = path.stat().st_size
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps(rows, indent=2) + "\n")
    fp32 = rows[0]
    print(
        "| format | dense acc. % | 90 % pruned acc. % | dense bytes | 90 % pruned bytes "
        "| smaller than dense FP32 |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        ratio = fp32["dense bytes"] / r["90 % pruned bytes"]
        print(
            f"| {r['format']} | {100 * r['dense']:.1f} | {100 * r['90 % pruned']:.1f} "
            f"| {r['dense bytes']:,} | {r['90 % pruned bytes']:,} | {ratio:.1f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
