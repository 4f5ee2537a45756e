"""Importing ONNX models: the same modules as tests/test_import_torch.py, exported with torch.onnx, must give
the same verdicts as their torch.export imports, and evaluate like onnxruntime and like the module."""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from torch_models import (
    PICNN,
    CatSlice,
    ClampedICNN,
    NormBlock,
    RandomNet,
    SoftplusICNN,
    TanhMLP,
    assert_same_outputs,
    confirm_with_module,
    example,
    seeded,
)

from dcpnet import cli
from dcpnet.errors import DcpnetError
from dcpnet.evaluate import compile_network
from dcpnet.interop.from_onnx import from_onnx
from dcpnet.interop.from_torch import from_torch
from dcpnet.verify import verify


def to_onnx(module, dims, path, dynamo=False):
    names = ["x", "y"][:len(dims)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), example(*dims), str(path), input_names=names, output_names=["out"],
                          dynamo=dynamo, dynamic_axes=None if dynamo else {n: {0: "B"} for n in names})
    return str(path)


def verdicts(net, params, wrt, fixed):
    res = verify(net, net.outputs[0], wrt, budget=3.0, params=params if fixed else None)
    return res.convex.verdict.value, res


CASES = [(SoftplusICNN, (2,), ["x"]), (ClampedICNN, (2,), ["x"]), (PICNN, (2, 2), ["y"]), (PICNN, (2, 2), ["x"]),
         (TanhMLP, (2,), ["x"]), (NormBlock, (3,), ["x"]), (CatSlice, (3,), ["x"])]


@pytest.mark.parametrize("cls, dims, wrt", CASES, ids=lambda c: getattr(c, "__name__", str(c)))
def test_onnx_gives_the_verdicts_of_torch_export(cls, dims, wrt, tmp_path):
    module = seeded(cls)
    if cls is ClampedICNN:
        module.clamp_()
    net_t, params_t = from_torch(module, example(*dims))
    net_o, params_o = from_onnx(to_onnx(module, dims, tmp_path / "m.onnx"))
    for fixed in (False, True):
        mine, res = verdicts(net_o, params_o, wrt, fixed)
        theirs, _ = verdicts(net_t, params_t, wrt, fixed)
        assert mine == theirs
        if mine == "refuted" and fixed:      # a refutation of the trained network: the module agrees
            assert confirm_with_module(module, net_o, res.convex.witness, "convex") > 0
    assert_same_outputs(module, net_o, params_o, np.random.default_rng(0))


def test_imported_onnx_evaluates_like_onnxruntime(tmp_path):
    module = seeded(PICNN)
    path = to_onnx(module, (2, 2), tmp_path / "m.onnx")
    net, params = from_onnx(path)
    rng = np.random.default_rng(1)
    feeds = {n: rng.standard_normal((6, 2)).astype(np.float32) for n in ("x", "y")}
    ref = ort.InferenceSession(path).run(None, feeds)[0].reshape(-1)
    env = {**params, **{k: v.astype(np.float64) for k, v in feeds.items()}}
    mine = compile_network(net, net.outputs).forward(env, set(feeds))["out"]
    np.testing.assert_allclose(mine, ref, rtol=1e-4, atol=1e-5)      # onnxruntime runs in float32


def test_constant_folded_weights_are_proved_with_params(tmp_path):
    """The dynamo exporter folds softplus(W) into plain initializers: their sign comes only from the values."""
    module = seeded(SoftplusICNN)
    path = to_onnx(module, (2,), tmp_path / "m.onnx", dynamo=True)
    net, params = from_onnx(path)
    assert "softplus(" in net.source.text and not any(n.startswith("hidden") for n in net.params)
    assert verify(net, "out", ["x"], budget=0.3).convex.verdict.value != "proved"
    assert verify(net, "out", ["x"], budget=0.3, params=params).convex.verdict.value == "proved"
    assert_same_outputs(module, net, params, np.random.default_rng(2), n=5)


def test_cli_imports_onnx(tmp_path, capsys):
    path = to_onnx(seeded(NormBlock), (3,), tmp_path / "m.onnx")
    assert cli.main(["import", path, "-o", str(tmp_path / "n.net")]) == 0
    said = capsys.readouterr().out
    assert "bn.running_mean -> bn_running_mean" in said
    assert "const  bn_running_var[4] >= 0" in (tmp_path / "n.net").read_text()
    assert cli.main(["check", str(tmp_path / "n.net"), "--wrt", "x", "--params", str(tmp_path / "n.npz")]) == 0


def test_an_unsupported_onnx_op_is_refused_by_name(tmp_path):
    class Sine(torch.nn.Module):
        def forward(self, x):
            return torch.sin(x)

    with pytest.raises(DcpnetError, match="unsupported ONNX op `Sin`"):
        from_onnx(to_onnx(Sine(), (2,), tmp_path / "s.onnx"))


ONNX_LAYERS = {"relu": torch.nn.ReLU, "softplus": torch.nn.Softplus, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid,
               "elu": torch.nn.ELU, "celu": lambda: torch.nn.CELU(0.7), "selu": torch.nn.SELU,
               "leaky": lambda: torch.nn.LeakyReLU(0.1), "hardtanh": torch.nn.Hardtanh,
               "dropout": lambda: torch.nn.Dropout(0.5), "batchnorm": lambda: torch.nn.BatchNorm1d(4)}
ONNX_HEADS = {"sum": lambda z: z.sum(dim=1), "amax": lambda z: z.amax(dim=1), "lse": lambda z: torch.logsumexp(z, 1),
              "norm": lambda z: torch.linalg.vector_norm(z, dim=1), "sqrt": lambda z: torch.sqrt(z ** 2 + 1).mean(1),
              "slice": lambda z: torch.cat([z[:, 1:3], z[:, :1]], dim=1).amin(dim=1)}


@settings(max_examples=10, deadline=None)
@given(st.lists(st.sampled_from(sorted(ONNX_LAYERS)), min_size=1, max_size=3), st.sampled_from(sorted(ONNX_HEADS)),
       st.integers(0, 2**16))
def test_random_onnx_models_evaluate_like_torch(tmp_path_factory, layers, head, seed):
    module = seeded(RandomNet, seed=seed, layers=layers, head=head, layer_table=ONNX_LAYERS, head_table=ONNX_HEADS)
    path = to_onnx(module, (3,), tmp_path_factory.mktemp("onnx") / "m.onnx")
    net, params = from_onnx(path)
    assert_same_outputs(module, net, params, np.random.default_rng(seed), n=6)
