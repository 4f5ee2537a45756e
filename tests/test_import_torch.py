"""Importing PyTorch modules (torch.export) and checking them, against the modules themselves.

Every imported network is evaluated against its module (float64, random inputs, 1e-6 relative), and every
refutation's witness is re-evaluated with the module in float64: its Jensen gap must be there too.
"""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from torch_models import (
    PICNN,
    CatSlice,
    ClampedICNN,
    LogSumExp,
    MaxAffine,
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
from dcpnet.interop.from_torch import from_torch, import_torch_module
from dcpnet.verify import verify


# -- the cases of issue 15 -----------------------------------------------------------------------------------
def test_softplus_icnn_is_proved_convex_and_evaluates_like_the_module():
    module = seeded(SoftplusICNN)
    net, params = from_torch(module, example(2))
    assert verify(net, "out", ["x"], budget=0.5).convex.verdict.value == "proved"
    # the reparametrised weights stay expressions of the raw params: softplus(hidden_0_weight) @ ...
    assert "softplus(hidden_0_weight)" in net.source.text
    assert_same_outputs(module, net, params, np.random.default_rng(1))


def test_clamped_icnn_is_proved_only_for_its_trained_weights():
    module = seeded(ClampedICNN).clamp_()
    net, params = from_torch(module, example(2))
    family = verify(net, "out", ["x"], budget=0.5)
    assert family.convex.verdict.value != "proved"       # raw weights: some weights break it
    trained = verify(net, "out", ["x"], budget=0.5, params=params)
    assert trained.convex.verdict.value == "proved"
    assert_same_outputs(module, net, params, np.random.default_rng(2))


def test_a_forgotten_clamp_is_refuted_for_the_trained_weights_and_the_module_agrees():
    module = seeded(ClampedICNN, seed=3)
    with torch.no_grad():
        module.out.weight.clamp_(min=0)                    # wz forgot its clamp
        module.wz.weight.mul_(3.0)
    net, params = from_torch(module, example(2))
    res = verify(net, "out", ["x"], budget=5.0, params=params)
    assert res.convex.verdict.value == "refuted"
    assert "wz_weight" in res.convex.reason                  # the rules stopped at the layer with the bad sign
    w = res.convex.witness
    for name, value in params.items():                       # the refutation is for the trained weights
        np.testing.assert_array_equal(np.asarray(w["fixed"][name]), value)
    assert confirm_with_module(module, net, w, "convex") > 0


def test_picnn_is_convex_in_y_and_refuted_in_x():
    module = seeded(PICNN)
    net, params = from_torch(module, example(2, 2))
    assert net.inputs == ["x", "y"]
    assert verify(net, "out", ["y"], budget=0.5).convex.verdict.value == "proved"
    res = verify(net, "out", ["x"], budget=5.0, params=params)
    assert res.convex.verdict.value == "refuted"
    assert confirm_with_module(module, net, res.convex.witness, "convex") > 0
    assert_same_outputs(module, net, params, np.random.default_rng(3))


def test_tanh_mlp_is_refuted_with_a_witness_the_module_confirms():
    module = seeded(TanhMLP)
    net, params = from_torch(module, example(2))
    assert net.params == ["net_0_weight", "net_0_bias", "net_2_weight", "net_2_bias"]
    res = verify(net, "out", ["x"], budget=5.0, params=params)
    assert res.convex.verdict.value == "refuted" and res.concave.verdict.value == "refuted"
    for prop in ("convex", "concave"):
        assert confirm_with_module(module, net, res[prop].witness, prop) > 0
    assert_same_outputs(module, net, params, np.random.default_rng(4))


@pytest.mark.parametrize("cls", [LogSumExp, MaxAffine, NormBlock, CatSlice])
def test_convex_by_construction_is_proved_for_every_weight(cls):
    module = seeded(cls)
    net, params = from_torch(module, example(3))
    for out in net.outputs:
        assert verify(net, out, ["x"], budget=0.3).convex.verdict.value == "proved"
    assert_same_outputs(module, net, params, np.random.default_rng(5))


def test_batch_norm_buffers_become_constants_and_eval_mode_is_restored():
    module = seeded(NormBlock).train()
    net, params = from_torch(module, example(3))
    assert module.training and module.bn.training            # left as it was
    assert net.consts == ["bn_running_mean", "bn_running_var"]
    assert "bn_running_mean" not in net.params and "aten.dropout" not in net.source.text
    assert net.variables["bn_running_var"].bounds.lo == 0     # a variance is never negative
    np.testing.assert_array_equal(params["bn_running_var"], module.bn.running_var.double().numpy())


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_imported_nets_evaluate_like_their_modules(seed):
    rng = np.random.default_rng(seed)
    for module, net, params in _ZOO():
        assert_same_outputs(module, net, params, rng, n=4)


_CACHE: list = []


def _ZOO():
    if not _CACHE:
        for cls, dims in ((SoftplusICNN, (2,)), (PICNN, (2, 2)), (TanhMLP, (2,)), (LogSumExp, (3,)),
                          (MaxAffine, (3,)), (NormBlock, (3,)), (CatSlice, (3,))):
            module = seeded(cls, seed=7)
            _CACHE.append((module, *from_torch(module, example(*dims))))
    return _CACHE


# -- names ----------------------------------------------------------------------------------------------------
def test_names_follow_the_state_dict():
    class Colliding(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Module()
            self.a.b = nn.Parameter(torch.ones(3))
            self.a_b = nn.Parameter(torch.ones(3))

        def forward(self, x):
            return (x * self.a.b + self.a_b).sum(dim=1), x

    module = Colliding()
    imported = import_torch_module(module, example(3), "<test>")
    names = {src: name for kind, src, name in imported.mapping}
    first, second = list(module.state_dict())      # the first key in state_dict order keeps the plain name
    assert (names[first], names[second]) == ("a_b", "a_b_1")
    assert "output out0, out1" in imported.text


# -- refusals -------------------------------------------------------------------------------------------------
def test_an_unsupported_op_is_refused_with_its_name_and_line():
    class Sine(nn.Module):
        def forward(self, x):
            return torch.sin(x)

    with pytest.raises(DcpnetError) as err:
        from_torch(Sine(), example(2))
    d = err.value.diagnostics[0]
    assert "aten.sin" in d.message and d.file == __file__ and "torch.sin(x)" in d.source_line


@pytest.mark.parametrize("forward, words", [
    (lambda x: x - x.mean(dim=0), "example axis"),
    (lambda x: {"y": x}, "dict"),
])
def test_forwards_that_mix_examples_or_return_dicts_are_refused(forward, words):
    class Bad(nn.Module):
        def forward(self, x):
            return forward(x)

    with pytest.raises(DcpnetError, match=words):
        from_torch(Bad(), example(2))


def test_inputs_with_two_feature_axes_are_refused():
    with pytest.raises(DcpnetError, match="more than one feature axis"):
        from_torch(nn.Flatten(), (torch.zeros(5, 2, 3),))


# -- the command line ---------------------------------------------------------------------------------------
def test_import_then_check_with_params(tmp_path, capsys):
    module = seeded(ClampedICNN).clamp_()
    torch.export.save(torch.export.export(module.eval(), example(2)), tmp_path / "m.pt2")
    assert cli.main(["import", str(tmp_path / "m.pt2"), "-o", str(tmp_path / "m.net")]) == 0
    said = capsys.readouterr().out
    assert "wz.weight -> wz_weight" in said and "m.npz" in said
    assert cli.main(["check", str(tmp_path / "m.net"), "--wrt", "x", "--json", "--budget", "0.5",
                     "--params", str(tmp_path / "m.npz")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["params"]["sha256"] == hashlib.sha256((tmp_path / "m.npz").read_bytes()).hexdigest()
    assert report["results"][0]["convex"]["verdict"] == "proved"
    assert cli.main(["check", str(tmp_path / "m.net"), "--wrt", "wz_weight", "--params",
                     str(tmp_path / "m.npz")]) == 2
    assert "fixed by --params" in capsys.readouterr().err


def test_the_worked_example_catches_the_forgotten_clamp(tmp_path):
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parent.parent / "examples" / "import_icnn_torch.py"
    spec = importlib.util.spec_from_file_location("import_icnn_torch", path)
    example_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example_module)
    out = example_module.main(["--small", "--keep", str(tmp_path)])
    assert out["good"]["code"] == 0 and out["good"]["result"]["convex"]["verdict"] == "proved"
    bad = out["bad"]["result"]["convex"]
    assert out["bad"]["code"] == 1 and bad["verdict"] == "refuted"
    assert "`hidden_1_weight`" in bad["reason"]                  # the layer whose clamp was forgotten
    assert out["torch_gap"] > 0                                    # and PyTorch itself sees the violation


# -- reparametrised weights keep their sign -------------------------------------------------------------------
REPARAMETRISATIONS = {
    "softplus": F.softplus, "exp": torch.exp, "abs": torch.abs, "relu": torch.relu,
    "square": lambda w: w ** 2, "clamp": lambda w: torch.clamp(w, min=0),
}


@pytest.mark.parametrize("how", ["forward", "parametrize"])
@pytest.mark.parametrize("name", sorted(REPARAMETRISATIONS))
def test_reparametrised_weights_are_proved_without_params(name, how):
    positive = REPARAMETRISATIONS[name]

    class Positive(nn.Module):
        def forward(self, w):
            return positive(w)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp, self.hid = nn.Linear(2, 4), nn.Linear(4, 1, bias=False)
            if how == "parametrize":
                torch.nn.utils.parametrize.register_parametrization(self.hid, "weight", Positive())

        def forward(self, x):
            z = F.softplus(self.inp(x))
            w = self.hid.weight if how == "parametrize" else positive(self.hid.weight)
            return F.linear(z, w)

    module = seeded(Net)
    net, params = from_torch(module, example(2))
    raw = "hid_parametrizations_weight_original" if how == "parametrize" else "hid_weight"
    assert raw in net.params                                   # the raw param, under its state_dict name
    assert verify(net, "out", ["x"], budget=0.2).convex.verdict.value == "proved"
    assert_same_outputs(module, net, params, np.random.default_rng(6))


# -- bad input on the command line ------------------------------------------------------------------------------
@pytest.mark.parametrize("name, content, words", [
    ("m.txt", b"", "cannot tell the format"),
    ("m.pt2", b"not a zip", "not a torch.export program"),
    ("m.onnx", b"\x08\x07garbage", "not an ONNX model"),
])
def test_unreadable_models_are_bad_input(name, content, words, tmp_path, capsys):
    (tmp_path / name).write_bytes(content)
    assert cli.main(["import", str(tmp_path / name), "-o", str(tmp_path / "m.net")]) == 2
    assert words in capsys.readouterr().err and not (tmp_path / "m.net").exists()
    assert cli.main(["import", str(tmp_path / "none.pt2"), "-o", str(tmp_path / "m.net")]) == 2
    assert "no such file" in capsys.readouterr().err


# -- random architectures: every writer of the op table against torch ---------------------------------------------
LAYERS = {
    "relu": nn.ReLU, "softplus": lambda: nn.Softplus(beta=1.5), "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
    "elu": nn.ELU, "celu": lambda: nn.CELU(0.7), "selu": nn.SELU, "gelu": nn.GELU, "silu": nn.SiLU,
    "leaky": lambda: nn.LeakyReLU(0.1), "hardtanh": nn.Hardtanh, "relu6": nn.ReLU6, "logsigmoid": nn.LogSigmoid,
    "dropout": lambda: nn.Dropout(0.5), "batchnorm": lambda: nn.BatchNorm1d(4),
}
HEADS = {
    "sum": lambda z: z.sum(dim=1), "mean": lambda z: z.mean(dim=-1, keepdim=True), "amax": lambda z: z.amax(dim=1),
    "lse": lambda z: torch.logsumexp(z, dim=1), "norm": lambda z: torch.linalg.vector_norm(z, dim=1),
    "exp": lambda z: torch.exp(z[:, 0]), "sqrt": lambda z: torch.sqrt(F.softplus(z)).sum(1),
    "square": lambda z: (z ** 2).sum(1) - z.square().mean(1), "clamp": lambda z: z.clamp(-0.5, 0.5).sum(1),
    "log1p": lambda z: torch.log1p(torch.exp(z)).amin(dim=1), "abs": lambda z: torch.abs(z - 0.3).max(dim=1).values,
    "logsoftmax": lambda z: F.log_softmax(z, dim=1)[:, 1],
}


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(sorted(LAYERS)), min_size=1, max_size=4), st.sampled_from(sorted(HEADS)),
       st.integers(0, 2**16))
def test_random_architectures_evaluate_like_torch(layers, head, seed):
    module = seeded(RandomNet, seed=seed, layers=layers, head=head, layer_table=LAYERS, head_table=HEADS)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm1d):
            with torch.no_grad():
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    net, params = from_torch(module, example(3))
    assert_same_outputs(module, net, params, np.random.default_rng(seed), n=6)


def test_the_command_reads_a_model_under_its_limits(tmp_path):
    """From the command line the model is read in a child process with a wall clock and a memory cap: the
    import works there, and a reading past its limit is bad input (exit 2), not a hang or a traceback."""
    import os
    import subprocess
    import sys

    module = seeded(ClampedICNN).clamp_()
    torch.export.save(torch.export.export(module.eval(), example(2)), tmp_path / "m.pt2")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    argv = [sys.executable, "-m", "dcpnet", "import", str(tmp_path / "m.pt2"), "-o", str(tmp_path / "m.net")]
    ok = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=300)
    assert ok.returncode == 0 and (tmp_path / "m.npz").exists(), ok.stderr
    late = subprocess.run(argv[:-1] + [str(tmp_path / "late.net")], env={**env, "DCPNET_IMPORT_SECONDS": "0.05"},
                          capture_output=True, text=True, check=False, timeout=300)
    assert late.returncode == 2 and "wall-clock limit" in late.stderr and "Traceback" not in late.stderr
    assert not (tmp_path / "late.net").exists()
