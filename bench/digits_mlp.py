"""The digits MLP: a small real task for pruning (and quantization) experiments.

scikit-learn's digits (1797 images of 8x8 pixels, shipped with scikit-learn,
no download), split 60/40 into train and test with a fixed seed. A NumPy MLP
64-256-256-10 with ReLU is trained by Adam on cross-entropy and saved as a
gbdnn model (no pickle)::

    python bench/digits_mlp.py train      # writes data/digits-mlp.npz
    python bench/digits_mlp.py evaluate   # the pruning table (README)

Calibration data for compressed-sensing pruning are the first
``CALIBRATION_ROWS`` training rows; the remaining training rows are held out
to measure layer output errors on rows no solver saw.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import gbdnn
from gbdnn.prune import (
    CSPPruner,
    CubicSchedule,
    MagnitudePruner,
    PruningScheduler,
)

ROOT = Path(__file__).resolve().parents[1]
MODEL_PATH = ROOT / "data" / "digits-mlp.npz"
RESULTS_PATH = ROOT / "bench" / "results" / "digits-pruning.json"
SEED = 0
HIDDEN = (256, 256)
CALIBRATION_ROWS = 800
SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95)


@dataclass
class Split:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def calibration(self) -> np.ndarray:
        return self.x_train[:CALIBRATION_ROWS]

    @property
    def held_out(self) -> np.ndarray:
        return self.x_train[CALIBRATION_ROWS:]


def load_split() -> Split:
    """Digits scaled to [0, 1], stratified 60/40 train/test split, fixed seed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.data.astype(np.float64) / 16.0
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, digits.target, test_size=0.4, stratify=digits.target, random_state=SEED
    )
    return Split(x_tr, y_tr, x_te, y_te)


def forward(params, x):
    """Activations of every layer (inputs to each Linear, then the logits)."""
    acts = [x]
    for k, (w, b) in enumerate(params):
        z = acts[-1] @ w + b
        acts.append(np.maximum(z, 0) if k < len(params) - 1 else z)
    return acts


def train(
    params, split: Split, *, epochs: int, lr: float = 1e-3, seed: int = SEED, on_step=None
) -> list:
    """Adam on softmax cross-entropy; ``on_step(weights)`` after every update."""
    rng = np.random.default_rng(seed)
    m = [np.zeros_like(p) for pair in params for p in pair]
    v = [np.zeros_like(p) for pair in params for p in pair]
    step, batch = 0, 64
    for _ in range(epochs):
        order = rng.permutation(len(split.x_train))
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            acts = forward(params, split.x_train[idx])
            logits = acts[-1] - acts[-1].max(axis=1, keepdims=True)
            prob = np.exp(logits)
            prob /= prob.sum(axis=1, keepdims=True)
            prob[np.arange(idx.size), split.y_train[idx]] -= 1
            grad = prob / idx.size
            grads = []
            for k in range(len(params) - 1, -1, -1):
                w, _ = params[k]
                grads.append((acts[k].T @ grad + 1e-4 * w, grad.sum(axis=0)))
                grad = (grad @ w.T) * (acts[k] > 0)
            flat_grads = [g for pair in reversed(grads) for g in pair]
            flat = [p for pair in params for p in pair]
            step += 1
            for i, (p, g) in enumerate(zip(flat, flat_grads, strict=True)):
                m[i] = 0.9 * m[i] + 0.1 * g
                v[i] = 0.999 * v[i] + 0.001 * g * g
                p -= lr * (m[i] / (1 - 0.9**step)) / (np.sqrt(v[i] / (1 - 0.999**step)) + 1e-8)
            if on_step is not None:
                on_step([w for w, _ in params])
    return params


def to_model(params) -> gbdnn.Sequential:
    names = [f"fc{k + 1}" for k in range(len(params) - 1)] + ["out"]
    layers = []
    for k, ((w, b), name) in enumerate(zip(params, names, strict=True)):
        layers.append(gbdnn.Linear(w, b, name=name))
        if k < len(params) - 1:
            layers.append(gbdnn.ReLU())
    return gbdnn.Sequential(layers)


def from_model(model: gbdnn.Sequential) -> list:
    return [
        (
            layer.weight.to_dense(fill_value=0).astype(np.float64),
            np.zeros(layer.out_features) if layer.bias is None else layer.bias.astype(np.float64),
        )
        for layer in model
        if isinstance(layer, gbdnn.Linear)
    ]


def accuracy(model: gbdnn.Sequential, x: np.ndarray, y: np.ndarray) -> float:
    """Test accuracy with inference on the gbdnn engine."""
    return float((np.argmax(model(x), axis=1) == y).mean())


def train_dense(split: Split) -> gbdnn.Sequential:
    rng = np.random.default_rng(SEED)
    sizes = (64, *HIDDEN, 10)
    params = [
        (rng.normal(size=(a, b)) * np.sqrt(2 / a), np.zeros(b))
        for a, b in itertools.pairwise(sizes)
    ]
    return to_model(train(params, split, epochs=60))


def gradual(model: gbdnn.Sequential, split: Split, sparsity: float, epochs: int = 10):
    """Fine-tune with a cubic schedule from 0 to ``sparsity`` over the first 2/3 of training."""
    params = from_model(model)
    steps_per_epoch = -(-len(split.x_train) // 64)
    total = epochs * steps_per_epoch
    schedule = CubicSchedule(sparsity, n_steps=10, frequency=max(1, (2 * total // 3) // 10))
    scheduler = PruningScheduler(MagnitudePruner(sparsity), schedule)
    train(params, split, epochs=epochs, on_step=lambda ws: scheduler.step(ws))
    return to_model(params)


def evaluate(model: gbdnn.Sequential, split: Split) -> dict:
    """Accuracy of every pruning method at every sparsity (one-shot and gradual)."""
    dense_acc = accuracy(model, split.x_test, split.y_test)
    rows = []
    for s in SPARSITIES:
        pruned = {
            "magnitude": MagnitudePruner(s).fit_transform(model),
            "CSP (IHT)": CSPPruner(s, solver="iht").fit_transform(model, split.calibration),
            "CSP (L1 + refit)": CSPPruner(s, solver="l1").fit_transform(model, split.calibration),
            "magnitude, gradual + fine-tune": gradual(model, split, s),
        }
        row = {"sparsity": s}
        for name, m in pruned.items():
            row[name] = accuracy(m, split.x_test, split.y_test)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    return {"dense": dense_acc, "rows": rows}


def markdown(result: dict) -> str:
    names = [k for k in result["rows"][0] if k != "sparsity"]
    lines = ["| sparsity | " + " | ".join(names) + " |", "| ---: |" + " ---: |" * len(names)]
    for row in result["rows"]:
        cells = [f"{100 * row[n]:.1f}" for n in names]
        lines.append(f"| {100 * row['sparsity']:.0f} % | " + " | ".join(cells) + " |")
    return f"Dense model: {100 * result['dense']:.1f} % test accuracy.\n\n" + "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=("train", "evaluate"))
    parser.add_argument("--overwrite", action="store_true", help="replace the saved model")
    args = parser.parse_args(argv)
    split = load_split()
    if args.command == "train":
        if MODEL_PATH.exists() and not args.overwrite:
            print(f"{MODEL_PATH} exists; pass --overwrite to replace it", file=sys.stderr)
            return 1
        model = train_dense(split)
        acc = accuracy(model, split.x_test, split.y_test)
        gbdnn.save(
            model,
            MODEL_PATH,
            overwrite=args.overwrite,
            metadata={
                "task": "scikit-learn digits, 60/40 stratified split, random_state=0",
                "trained_by": "bench/digits_mlp.py train",
                "seed": SEED,
                "test_accuracy": acc,
            },
        )
        print(f"saved {MODEL_PATH} (test accuracy {100 * acc:.2f} %)")
        return 0
    result = evaluate(gbdnn.load(MODEL_PATH), split)
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
