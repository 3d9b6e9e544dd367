"""ONNX import and export, checked against onnxruntime within proved rounding bounds."""

import numpy as np
import pytest
from fp_bounds import FP32, FP64, bound

import gbdnn
from gbdnn.errors import FileFormatError, MissingFileError, UnsupportedError

onnx = pytest.importorskip("onnx", reason="onnx is an optional extra: pip install gbdnn[onnx]")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is an optional extra")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

RNG = np.random.default_rng(7)
W1 = (RNG.normal(size=(6, 10)) * (RNG.random((6, 10)) < 0.6)).astype(np.float32)
B1 = RNG.normal(size=10).astype(np.float32)
W2 = RNG.normal(size=(10, 3)).astype(np.float32)
X = RNG.normal(size=(11, 6)).astype(np.float32)


def _graph(nodes, inits, opset=17, n_in=6, n_out=3, elem=TensorProto.FLOAT):
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", elem, ["N", n_in])],
        [helper.make_tensor_value_info("y", elem, ["N", n_out])],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    opsets = [helper.make_opsetid("", opset)]
    return helper.make_model(
        graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets)
    )


def _ort(proto, x):
    # the reference is the graph as written: no fusions (onnxruntime 1.31's Relu+Clip fusion
    # also rejects float64 Clip bounds)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(
        proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _check(proto, x, weights, biases, unit=FP32):
    model = gbdnn.from_onnx(proto)
    got, want = model(x), _ort(proto, x)
    assert got.shape == want.shape
    assert (np.abs(got - want) <= bound(x, weights, biases, unit)).all()
    return model


def test_matmul_add_relu_clip_chain():
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["h"], name="mm"),
        helper.make_node("Add", ["B1", "h"], ["hb"], name="bias"),  # bias on the left
        helper.make_node("Relu", ["hb"], ["r"], name="relu"),
        helper.make_node("Identity", ["r"], ["i"]),
        helper.make_node("Dropout", ["i"], ["d"]),
        helper.make_node("Flatten", ["d"], ["f"], axis=1),
        helper.make_node("MatMul", ["f", "W2"], ["z"], name="mm2"),
        helper.make_node("Clip", ["z", "lo", "hi"], ["y"], name="clip"),
    ]
    inits = {"W1": W1, "B1": B1.reshape(1, -1), "W2": W2}
    inits.update(lo=np.array(0, np.float32), hi=np.array(1.5, np.float32))
    model = _check(_graph(nodes, inits), X, [W1, W2], [B1, None])
    assert [type(x).__name__ for x in model] == ["Linear", "ReLU", "Linear", "ReLU"]
    assert model[-1].max_value == 1.5 and model[0].nnz == np.count_nonzero(W1)


def test_gemm_attributes_and_old_clip():
    # Y = alpha X Wt' + beta C, the weight stored transposed; Clip(min, max) as attributes (opset 6)
    nodes = [
        helper.make_node("Gemm", ["x", "Wt", "C"], ["h"], transB=1, alpha=0.5, beta=2.0),
        helper.make_node("Clip", ["h"], ["c"], min=0.0, max=2.0),
        helper.make_node("MatMul", ["c", "W2"], ["y"]),
    ]
    inits = {"Wt": W1.T.copy(), "C": B1, "W2": W2}
    model = _check(_graph(nodes, inits, opset=9), X, [0.5 * W1, W2], [2 * B1, None])
    np.testing.assert_array_equal(model[0].bias, (2.0 * B1.astype(np.float64)).astype(np.float32))


def test_constant_nodes_float64_and_relu_then_clip_merge():
    w1, w2 = W1.astype(np.float64), W2.astype(np.float64)
    nodes = [
        helper.make_node("Constant", [], ["W1"], value=numpy_helper.from_array(w1)),
        helper.make_node("MatMul", ["x", "W1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Clip", ["r", "lo", "hi"], ["c"]),
        helper.make_node("MatMul", ["c", "W2"], ["y"]),
    ]
    inits = {"W2": w2, "lo": np.array(0.0), "hi": np.array(0.5)}
    proto = _graph(nodes, inits, elem=TensorProto.DOUBLE)
    model = _check(proto, X.astype(np.float64), [w1, w2], [None, None], FP64)
    assert model.dtype.name == "float64"
    assert [repr(x) for x in model if isinstance(x, gbdnn.ReLU)] == ["ReLU(max_value=0.5)"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's TorchScript exporter
def test_torch_exported_model():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    nn = torch.nn
    module = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 3)).eval()
    proto_path = _export(torch, module)
    ws = [m.weight.detach().double().numpy().T for m in (module[0], module[3])]
    bs = [m.bias.detach().double().numpy() for m in (module[0], module[3])]
    _check(onnx.load(proto_path), X, ws, bs)


def _export(torch, module):
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / "m.onnx"
    torch.onnx.export(
        module,
        (torch.from_numpy(X),),
        str(path),
        dynamo=False,
        input_names=["x"],
        dynamic_axes={"x": {0: "n"}},
    )
    return path


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        (
            [
                helper.make_node("MatMul", ["x", "W1"], ["h"], name="mm"),
                helper.make_node("Sigmoid", ["h"], ["s"], name="act"),
                helper.make_node("MatMul", ["s", "W2"], ["y"]),
            ],
            r"node 'act' \(Sigmoid\) is not supported",
        ),
        (
            [
                helper.make_node("MatMul", ["x", "W1"], ["h"], name="mm"),
                helper.make_node("Add", ["h", "h"], ["s"], name="twice"),
                helper.make_node("MatMul", ["s", "W2"], ["y"]),
            ],
            r"node 'twice' \(Add\) does not read only the previous output",
        ),
        (
            [
                helper.make_node("Gemm", ["x", "W1"], ["h"], name="g", transA=1),
                helper.make_node("MatMul", ["h", "W2"], ["y"]),
            ],
            r"node 'g' \(Gemm\): only Gemm\(X, W, C\) with transA=0",
        ),
        (
            [
                helper.make_node("MatMul", ["x", "W1"], ["h"]),
                helper.make_node("Clip", ["h", "lo"], ["c"], name="c"),
                helper.make_node("MatMul", ["c", "W2"], ["y"]),
            ],
            r"node 'c' \(Clip\): only Clip\(min=0",
        ),
        (
            [
                helper.make_node("Relu", ["x"], ["r"], name="first"),
                helper.make_node("Add", ["r", "B1"], ["y"], name="b"),
            ],
            r"node 'b' \(Add\): Add must directly follow a MatMul or Gemm",
        ),
    ],
)
def test_unsupported_graphs_name_the_node(nodes, message):
    inits = {"W1": W1, "W2": W2, "B1": B1[:6], "lo": np.array(-1, np.float32)}
    with pytest.raises(UnsupportedError, match=message):
        gbdnn.from_onnx(_graph(nodes, inits, n_out=6 if len(nodes) == 2 else 3))


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_to_onnx_runs_in_onnxruntime(tmp_path, sparse, dtype):
    model = gbdnn.Sequential(
        [gbdnn.Linear(W1, B1, dtype=dtype), gbdnn.ReLU(2.0), gbdnn.Linear(W2, dtype=dtype)]
    )
    path = tmp_path / "m.onnx"
    proto = gbdnn.to_onnx(model, path, sparse_weights=sparse)
    assert path.read_bytes() == proto.SerializeToString()
    x = X.astype(dtype)
    unit = FP32 if dtype == "float32" else FP64
    assert (np.abs(_ort(proto, x) - model(x)) <= bound(x, [W1, W2], [B1, None], unit)).all()
    back = gbdnn.from_onnx(path)
    assert back[0].weight.isequal(model[0].weight) and back[1].max_value == 2.0
    with pytest.raises(FileExistsError):
        gbdnn.to_onnx(model, path)
    assert path.read_bytes() == proto.SerializeToString()


def test_bad_files(tmp_path):
    with pytest.raises(MissingFileError):
        gbdnn.from_onnx(tmp_path / "none.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00not a protobuf at all")
    with pytest.raises(FileFormatError, match="not a valid ONNX model"):
        gbdnn.from_onnx(bad)
    good = gbdnn.to_onnx(gbdnn.Sequential([gbdnn.Linear(W1)])).SerializeToString()
    truncated = tmp_path / "cut.onnx"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(FileFormatError):
        gbdnn.from_onnx(truncated)
