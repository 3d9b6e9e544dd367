"""PyTorch import and export: outputs equal to PyTorch's within proved rounding bounds."""

import numpy as np
import pytest
from fp_bounds import FP32, FP64, bound

import gbdnn
from gbdnn.errors import NonFiniteError, UnsupportedError

torch = pytest.importorskip("torch", reason="torch is an optional extra: pip install gbdnn[torch]")
nn = torch.nn
prune = pytest.importorskip("torch.nn.utils.prune")


def _mlp(dtype=torch.float32) -> "nn.Sequential":
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Flatten(),
            nn.Linear(12, 32),
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.Sequential(nn.Linear(32, 16), nn.Hardtanh(0.0, 0.75), nn.Identity()),
            nn.Linear(16, 8),
            nn.ReLU6(),
            nn.Linear(8, 5, bias=False),
        )
        .to(dtype)
        .eval()
    )


def _linears(module) -> list:
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def _torch_bound(module, x: np.ndarray, unit: float) -> np.ndarray:
    ws = [m.weight.detach().double().numpy().T for m in _linears(module)]
    bs = [None if m.bias is None else m.bias.detach().double().numpy() for m in _linears(module)]
    return bound(x, ws, bs, unit)


@pytest.mark.parametrize(("dtype", "unit"), [(torch.float32, FP32), (torch.float64, FP64)])
def test_from_torch_matches_torch(dtype, unit):
    module = _mlp(dtype)
    x = torch.randn(40, 12, dtype=dtype, generator=torch.Generator().manual_seed(1))
    model = gbdnn.from_torch(module)
    assert model.dtype.name == str(dtype).removeprefix("torch.")
    got = model(x.numpy())
    want = module(x).detach().numpy()
    assert got.dtype == want.dtype
    assert (np.abs(got - want) <= _torch_bound(module, x.numpy(), unit)).all()


def test_weights_are_transposed_and_layers_mapped():
    module = _mlp()
    model = gbdnn.from_torch(module)
    kinds = [type(layer).__name__ for layer in model]
    assert kinds == ["Linear", "ReLU", "Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert [layer.max_value for layer in model if isinstance(layer, gbdnn.ReLU)] == [None, 0.75, 6]
    first = module[1].weight.detach().numpy()
    np.testing.assert_array_equal(model[0].weight.to_dense(fill_value=0, dtype=np.float32), first.T)
    assert model[0].name == "1" and model[2].name == "4.0"
    assert model[-1].bias is None


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support")
def test_pruned_and_sparse_weights_store_only_nonzeros():
    module = _mlp()
    prune.l1_unstructured(module[1], "weight", amount=0.75)
    module[5].weight = nn.Parameter(module[5].weight.detach().to_sparse_coo())
    module[4][0].weight = nn.Parameter(module[4][0].weight.detach().to_sparse_csr())
    model = gbdnn.from_torch(module)
    assert model[0].nnz == int((module[1].weight != 0).sum()) == 12 * 32 // 4
    x = torch.randn(7, 12)
    dense = _mlp()  # same seed: same weights, densely stored
    dense[1].weight = nn.Parameter(module[1].weight.detach().clone())
    want = dense(x).detach().numpy()
    assert (np.abs(model(x.numpy()) - want) <= _torch_bound(dense, x.numpy(), FP32)).all()


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (nn.Sequential(nn.Linear(4, 4), nn.Sigmoid()), r"module 1 \(Sigmoid\) is not supported"),
        (nn.Sequential(nn.Linear(4, 4), nn.Hardtanh(-1.0, 1.0)), r"module 1 \(Hardtanh"),
        (nn.Sequential(nn.Flatten(0), nn.Linear(4, 4)), r"module 0 \(Flatten\(0, -1\)\)"),
        (nn.Sequential(nn.ReLU(), nn.Dropout()), "no Linear"),
    ],
)
def test_unsupported_modules_are_named(module, message):
    with pytest.raises(UnsupportedError, match=message):
        gbdnn.from_torch(module.eval())


def test_dropout_in_training_mode_is_refused():
    with pytest.raises(UnsupportedError, match=r"module 1 \(Dropout\) is in training mode"):
        gbdnn.from_torch(nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)))


def test_bad_weights_and_arguments():
    linear = nn.Linear(3, 2)
    with torch.no_grad():
        linear.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="weight"):
        gbdnn.from_torch(linear)
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        gbdnn.from_torch(np.ones((2, 2)))
    model = gbdnn.from_torch(nn.Linear(3, 2))
    with pytest.raises(ValueError, match="layout"):
        gbdnn.to_torch(model, layout="coo")


@pytest.mark.parametrize("layout", ["dense", "sparse_csr"])
def test_to_torch_round_trip(layout):
    rng = np.random.default_rng(2)
    w1 = rng.normal(size=(10, 20)) * (rng.random((10, 20)) < 0.3)
    w2 = rng.normal(size=(20, 4)) * (rng.random((20, 4)) < 0.5)
    model = gbdnn.Sequential(
        [gbdnn.Linear(w1, 0.1), gbdnn.ReLU(), gbdnn.Linear(w2, rng.normal(size=4)), gbdnn.ReLU(3.0)]
    )
    module = gbdnn.to_torch(model, layout=layout)
    assert list(module.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert not module.training
    weight = module.state_dict()["0.weight"]
    assert weight.layout == (torch.strided if layout == "dense" else torch.sparse_csr)
    np.testing.assert_array_equal(weight.to_dense().numpy(), w1.T.astype(np.float32))
    x = rng.normal(size=(9, 10)).astype(np.float32)
    got = module(torch.from_numpy(x)).detach().numpy()
    limit = bound(x, [w1, w2], [np.full(20, 0.1), None], FP32)
    assert (np.abs(got - model(x)) <= limit).all()
    back = gbdnn.from_torch(module)
    for a, b in zip(model, back, strict=True):
        if isinstance(a, gbdnn.Linear):
            assert a.weight.isequal(b.weight) and np.array_equal(a.bias, b.bias)
        else:
            assert a.max_value == b.max_value


def test_to_torch_of_a_quantized_model_uses_the_quantized_weights():
    from gbdnn.quant import UniformQuantizer, codebook_model

    rng = np.random.default_rng(3)
    w = rng.normal(size=(16, 8)).astype(np.float32)
    model = codebook_model(gbdnn.Sequential([gbdnn.Linear(w)]), UniformQuantizer(4))
    module = gbdnn.to_torch(model)
    exact = model[0].weight.to_dense(fill_value=0, dtype=np.float32)
    np.testing.assert_array_equal(module[0].weight.detach().numpy(), exact.T)
    assert len(np.unique(exact)) <= 16
