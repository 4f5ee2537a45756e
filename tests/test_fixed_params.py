"""Params fixed to trained values (`check --params`, `verify(params=)`) and `const` declarations.

A proof for fixed params must hold for those values; a refutation must be one of the network with exactly
those values: its witness is re-evaluated here with an independent NumPy reference of the network.
"""
import hashlib
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcpnet.cli import main
from dcpnet.errors import DcpnetError
from dcpnet.fixed import fix_params
from dcpnet.graph import load_text
from dcpnet.train.data import save_npz
from dcpnet.verify import verify

ICNN = """\
input  x[2]
param  W0[4, 2], b0[4]
param  Wz[4, 4]
param  w[4]
z1 = softplus(W0 @ x + b0)
z2 = softplus(Wz @ z1)
f  = w @ z2
"""


def reference(p: dict, x: np.ndarray) -> float:
    """The network ICNN written again in NumPy, for the trained values p."""
    sp = lambda u: np.logaddexp(0.0, u)
    return float(p["w"] @ sp(p["Wz"] @ sp(p["W0"] @ x + p["b0"])))


def trained(rng, negative_entry: bool) -> dict:
    p = {"W0": rng.normal(size=(4, 2)), "b0": rng.normal(size=4), "Wz": np.abs(rng.normal(size=(4, 4))),
         "w": np.abs(rng.normal(size=4)) + 0.1}
    if negative_entry:   # one unit sees only a negative weight: softplus(-3 softplus(u)) bends both ways
        p["Wz"][1] = [0.0, 0.0, -3.0, 0.0]
        p["w"][1] = 5.0
    return p


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_nonnegative_trained_weights_are_proved_for_those_weights(seed):
    net = load_text(ICNN)
    p = trained(np.random.default_rng(seed), negative_entry=False)
    assert verify(net, "f", ["x"], budget=0.2).convex.verdict.value != "proved"
    assert verify(net, "f", ["x"], budget=0.2, params=p).convex.verdict.value == "proved"


@settings(max_examples=4, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_a_refutation_with_fixed_params_uses_exactly_the_trained_values(seed):
    net = load_text(ICNN)
    p = trained(np.random.default_rng(seed), negative_entry=True)
    res = verify(net, "f", ["x"], budget=3.0, params=p).convex
    if res.verdict.value != "refuted":
        assert res.verdict.value == "unknown"        # never proved: the trained Wz has a negative entry
        return
    wit = res.witness
    for name, value in p.items():
        np.testing.assert_array_equal(np.asarray(wit["fixed"][name]), value)
    a, b = np.asarray(wit["a"]["x"]), np.asarray(wit["b"]["x"])
    gap = reference(p, (a + b) / 2) - (reference(p, a) + reference(p, b)) / 2
    assert gap > 0 and np.isclose(gap, wit["gap"], rtol=1e-6, atol=1e-12)


def test_the_forgotten_sign_is_found():
    net = load_text(ICNN)
    p = trained(np.random.default_rng(0), negative_entry=True)
    res = verify(net, "f", ["x"], budget=5.0, params=p).convex
    assert res.verdict.value == "refuted" and "Wz" in res.reason


def test_fixed_params_become_constants_with_their_hull():
    net = fix_params(load_text(ICNN), trained(np.random.default_rng(1), negative_entry=True))
    assert net.params == [] and set(net.fixed) == {"W0", "b0", "Wz", "w"}
    assert net.variables["Wz"].bounds.lo == -3.0 and net.variables["Wz"].kind == "const"


@pytest.mark.parametrize("change, words", [
    (lambda p: p.pop("w"), "param `w` is missing"),
    (lambda p: p.update(w=np.ones(5)), "has shape (5,); expected (4,)"),
    (lambda p: p["Wz"].__setitem__((0, 0), np.nan), "non-finite"),
])
def test_a_params_file_that_does_not_match_is_bad_input(change, words, tmp_path, capsys):
    (tmp_path / "n.net").write_text(ICNN)
    p = trained(np.random.default_rng(2), negative_entry=False)
    change(p)
    save_npz(tmp_path / "p.npz", p)
    assert main(["check", str(tmp_path / "n.net"), "--params", str(tmp_path / "p.npz")]) == 2
    assert words in capsys.readouterr().err


def test_declared_constraints_still_bind_fixed_values():
    net = load_text("input x\nparam w >= 0\nf = w * x^2\n")
    with pytest.raises(DcpnetError, match="violates its declared constraint"):
        fix_params(net, {"w": np.array(-1.0)})


@pytest.mark.parametrize("claim", ["check convex(f) in Wz", "check convex(f) in params", "check convex(f) in x, w"])
def test_a_check_about_a_fixed_param_is_bad_input(claim, tmp_path, capsys):
    (tmp_path / "n.net").write_text(ICNN + claim + "\n")
    save_npz(tmp_path / "p.npz", trained(np.random.default_rng(3), negative_entry=False))
    assert main(["check", str(tmp_path / "n.net"), "--params", str(tmp_path / "p.npz")]) == 2
    err = capsys.readouterr().err
    assert "n.net:8:" in err and "--params fixes" in err


def test_wrt_a_fixed_param_is_bad_input(tmp_path, capsys):
    (tmp_path / "n.net").write_text(ICNN)
    save_npz(tmp_path / "p.npz", trained(np.random.default_rng(3), negative_entry=False))
    for wrt in ("params", "Wz"):
        assert main(["check", str(tmp_path / "n.net"), "--wrt", wrt, "--params", str(tmp_path / "p.npz")]) == 2
        assert "fixed by --params" in capsys.readouterr().err


def test_the_json_report_records_the_params_file(tmp_path, capsys):
    (tmp_path / "n.net").write_text(ICNN + "check convex(f) in x\n")
    save_npz(tmp_path / "p.npz", trained(np.random.default_rng(4), negative_entry=False))
    assert main(["check", str(tmp_path / "n.net"), "--json", "--params", str(tmp_path / "p.npz")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["params"] == {"file": str(tmp_path / "p.npz"),
                                "sha256": hashlib.sha256((tmp_path / "p.npz").read_bytes()).hexdigest()}
    assert [r["holds"] for r in report["results"]] == [True]


# -- const declarations --------------------------------------------------------------------------------------
def test_a_const_is_never_a_variable(tmp_path, capsys):
    (tmp_path / "c.net").write_text("input x[2]\nconst m[2]\ny = sum(relu(x - m))\ncheck convex(y) in m\n")
    assert main(["check", str(tmp_path / "c.net")]) == 2
    assert "`m` is a constant" in capsys.readouterr().err
    net = load_text("input x[2]\nconst m[2]\nparam w[2]\ny = sum(relu(x - m)) + w @ x\n")
    assert net.params == ["w"] and net.consts == ["m"]
    assert verify(net, "y", ["params"], budget=0.2).convex.verdict.value == "proved"


def test_eval_reads_consts_with_the_params(tmp_path, capsys):
    (tmp_path / "c.net").write_text("input x[2]\nconst m[2]\nparam s\ny = s * sum(x - m)\n")
    save_npz(tmp_path / "p.npz", {"m": np.array([1.0, 2.0]), "s": np.array(2.0)})
    save_npz(tmp_path / "d.npz", {"x": np.array([[1.0, 2.0], [3.0, 5.0]])})
    assert main(["eval", str(tmp_path / "c.net"), "--params", str(tmp_path / "p.npz"), "--data",
                 str(tmp_path / "d.npz"), "--out", str(tmp_path / "o.npz")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "o.npz")["y"], [0.0, 10.0])
    save_npz(tmp_path / "p.npz", {"s": np.array(2.0)})
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "c.net"), "--params", str(tmp_path / "p.npz"), "--data",
                 str(tmp_path / "d.npz")]) == 2
    assert "const `m` is missing" in capsys.readouterr().err


def test_training_keeps_consts_and_needs_their_values(tmp_path, capsys):
    (tmp_path / "c.net").write_text("input x[2]\ninput y\nconst m[2]\nparam w[2]\nloss = (w @ (x - m) - y)^2\n")
    rng = np.random.default_rng(0)
    save_npz(tmp_path / "d.npz", {"x": rng.normal(size=(20, 2)), "y": rng.normal(size=20)})
    args = ["train", str(tmp_path / "c.net"), "--data", str(tmp_path / "d.npz"), "--loss", "loss", "--epochs", "2",
            "--out", str(tmp_path / "p.npz")]
    assert main(args) == 2
    assert "constant `m`" in capsys.readouterr().err
    save_npz(tmp_path / "i.npz", {"w": np.zeros(2), "m": np.array([1.0, 2.0])})
    assert main(args + ["--init", str(tmp_path / "i.npz")]) == 0
    out = np.load(tmp_path / "p.npz")
    np.testing.assert_array_equal(out["m"], [1.0, 2.0])        # never trained
    assert np.any(out["w"] != 0)
