"""Training keeps the certificate: constraints hold exactly, the proofs and Jensen's inequality still hold for the
trained weights; the optimizers, determinism, the NaN stop, validation and the `dcpnet train` command."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from dcpnet.cli import main
from dcpnet.evaluate import compile_network
from dcpnet.graph import load_text
from dcpnet.train import Tick, mean_loss, pinned, recheck, train, violations
from dcpnet.train.params import project_params
from dcpnet.verify import Verifier

ICNN = """\
input  x[3]
input  y
param  W0[6, 3], b0[6]
param  Wz[6, 6] >= 0
param  Wx[6, 3], b1[6]
param  w[6] >= 0, c
z1 = softplus(W0 @ x + b0)
z2 = softplus(Wz @ z1 + Wx @ x + b1)
f  = w @ z2 + c
loss = (f - y)^2
output f, loss
check convex(f) in x
check not convex(loss) in x
"""

LINEAR = "input x[2]\ninput y\nparam v[2], c\nloss = (v @ x + c - y)^2\n"


def icnn_data(n=256, seed=0):
    """A target that is concave in x: the unconstrained fit wants negative weights on the z-path."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    return {"x": x, "y": -np.sum(x * x, axis=1) + 0.1 * rng.normal(size=n)}


@pytest.fixture(scope="module")
def icnn():
    net = load_text(ICNN, "icnn.net")
    res = train(net, icnn_data(), "loss", epochs=15, batch=32, lr=0.03, seed=3)
    return net, res


def jensen_gaps(net, params, target, rng, trials=2000, scale=2.0):
    """f((a+b)/2) - (f(a)+f(b))/2 at random pairs of inputs x, the trained params fixed (<= 0 when convex)."""
    plan = compile_network(net, [target])
    a, b = rng.normal(scale=scale, size=(2, trials, 3))
    fa, fb, fm = (plan.forward(dict(params, x=x), {"x"})[target] for x in (a, b, (a + b) / 2))
    return fm - (fa + fb) / 2, np.maximum(np.abs(fa), np.abs(fb))


# -- the certificate after training ------------------------------------------------------------------------

def test_constraints_hold_exactly_and_projection_was_active(icnn):
    net, res = icnn
    assert violations(net, res.params) == []
    for name in ("Wz", "w"):
        assert res.params[name].min() >= 0.0                          # exactly: no -1e-17
    # the concave target pushed weights below 0: the projection clipped some of them to exactly 0
    assert np.count_nonzero(res.params["Wz"] == 0) + np.count_nonzero(res.params["w"] == 0) > 0
    assert res.history["train"][-1] < 0.5 * res.history["train"][0]


def test_certificate_rechecked_with_trained_weights_pinned(icnn):
    net, res = icnn
    strict = Verifier(pinned(net, res.params), refute=False)
    assert strict.verify("f", ["x"]).convex.verdict.value == "proved"
    # pinned means the trained values: each param's range is the hull of its entries
    box = pinned(net, res.params).variables["Wz"].bounds
    assert (box.lo, box.hi) == (res.params["Wz"].min(), res.params["Wz"].max())
    checks = recheck(net, res.params, budget=2.0)
    assert [(c.holds, c.declared, c.pinned) for c in checks] == [(True, "proved", "proved"),
                                                                 (True, "refuted", None)]


def test_trained_network_is_convex_in_x_numerically(icnn):
    net, res = icnn
    rng = np.random.default_rng(7)
    gaps, size = jensen_gaps(net, res.params, "f", rng)
    assert np.all(gaps <= 1e-12 * (1 + size))
    # the same test sees non-convexity when the z-path weights are negative: it is not vacuous
    flipped = dict(res.params, Wz=-res.params["Wz"] - 0.5, w=-res.params["w"] - 0.5)
    gaps, size = jensen_gaps(net, flipped, "f", rng)
    assert np.any(gaps > 1e-6 * (1 + size))


def test_pinned_uses_the_trained_values():
    net = load_text("input x[2]\nparam W[2, 2]\nf = sum(relu(W @ relu(x)))\n")
    assert Verifier(net, refute=False).verify("f", ["x"]).convex.verdict.value == "unknown"
    positive = {"W": np.array([[0.5, 1.0], [0.0, 2.0]])}
    assert Verifier(pinned(net, positive), refute=False).verify("f", ["x"]).convex.verdict.value == "proved"
    mixed = {"W": np.array([[0.5, -1.0], [0.0, 2.0]])}
    assert Verifier(pinned(net, mixed), refute=False).verify("f", ["x"]).convex.verdict.value == "unknown"


def test_float32_training_keeps_constraints_exactly():
    net = load_text("input x\ninput y\nparam w[4] in [0.7, 1.3]\nloss = (sum(w) * x - y)^2\n")
    x = np.linspace(-1, 1, 50)
    for target in (0.0, 100.0):                                       # pushes w to each bound
        res = train(net, {"x": x, "y": target * x}, "loss", epochs=30, batch=10, lr=0.1, dtype=np.float32)
        w = res.params["w"]
        assert w.dtype == np.float32 and violations(net, res.params) == []
        assert np.all(w.astype(np.float64) >= 0.7) and np.all(w.astype(np.float64) <= 1.3)


def test_project_is_exact_at_float32_bounds():
    net = load_text("input x\nparam w[3] in [0.7, 0.9]\ny = sum(w * x)\n")
    p = {"w": np.array([0.1, 0.8, 5.0], dtype=np.float32)}
    project_params(net, p)
    wide = p["w"].astype(np.float64)
    assert wide[0] >= 0.7 and wide[2] <= 0.9 and p["w"][1] == np.float32(0.8)
    assert wide[0] - 0.7 < 1e-7 and 0.9 - wide[2] < 1e-7


# -- the loop -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("optimizer, lr", [("sgd", 0.1), ("adam", 0.05)])
def test_optimizers_fit_a_linear_model(optimizer, lr):
    net = load_text(LINEAR)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2))
    data = {"x": x, "y": x @ np.array([2.0, -1.0]) + 0.5}
    res = train(net, data, "loss", epochs=40, batch=20, lr=lr, optimizer=optimizer, seed=1)
    train_loss = res.history["train"]
    assert train_loss[-1] < 1e-3 * train_loss[0]
    assert all(b <= a * 1.05 for a, b in itertools.pairwise(train_loss))
    np.testing.assert_allclose(res.params["v"], [2.0, -1.0], atol=0.02)
    assert abs(float(res.params["c"]) - 0.5) < 0.02
    assert res.steps == 40 * 20 and res.reason == "finished 40 epochs" and not res.stopped_early


def test_sgd_step_is_the_gradient_step():
    net = load_text("input x\nparam w\nloss = (w * x - 1)^2\n")
    res = train(net, {"x": np.array([1.0, 2.0])}, "loss", epochs=1, batch=2, lr=0.1, optimizer="sgd",
                init={"w": np.array(0.0)})
    # mean gradient at w = 0: mean(2 (w x - 1) x) = -3
    assert float(res.params["w"]) == pytest.approx(0.3, abs=1e-15)


def test_same_seed_same_run_and_another_seed_differs():
    net = load_text(ICNN)
    data = icnn_data(96)
    runs = [train(net, data, "loss", epochs=3, batch=16, lr=0.01, seed=s, val=0.25) for s in (5, 5, 6)]
    for name in net.params:
        assert np.array_equal(runs[0].params[name], runs[1].params[name])
    assert runs[0].history == runs[1].history
    assert np.array_equal(runs[0].val_index, runs[1].val_index)
    assert not np.array_equal(runs[0].params["W0"], runs[2].params["W0"])


def test_nan_stop_keeps_the_last_good_params():
    # sqrt(1 - w) is NaN once w > 1; the fit pulls w towards 10
    net = load_text("input x\nparam w\nloss = (w - 10)^2 * x + sqrt(1 - w)\n")
    data = {"x": np.ones(8)}
    ticks: list[Tick] = []
    res = train(net, data, "loss", epochs=50, batch=4, lr=0.01, optimizer="sgd", progress=ticks.append)
    assert res.stopped_early and "the loss is nan" in res.reason and "epoch" in res.reason
    w = float(res.params["w"])
    assert w <= 1 and math.isfinite(mean_loss(net, res.params, data, "loss"))
    # these are the params of the last finite step: one more SGD step from them leaves the domain w <= 1
    grad = 2 * (w - 10) - 0.5 / math.sqrt(1 - w)
    assert w - 0.01 * grad > 1
    assert ticks and all(math.isfinite(t.loss) for t in ticks)
    assert len(res.history["train"]) < 50


def test_inf_stop():
    net = load_text("input x\nparam w\nloss = -exp(w * x)\n")
    res = train(net, {"x": np.ones(4)}, "loss", epochs=100, batch=4, lr=1.0, optimizer="sgd")
    assert res.stopped_early and "inf" in res.reason
    assert all(np.isfinite(v).all() for v in res.params.values())
    assert math.isfinite(mean_loss(net, res.params, {"x": np.ones(4)}, "loss"))


def test_validation_early_stopping_restores_the_best_epoch():
    net = load_text(LINEAR)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(60, 2))
    data = {"x": x, "y": x @ np.array([1.0, 1.0]) + rng.standard_cauchy(60)}     # heavy noise
    res = train(net, data, "loss", epochs=200, batch=4, lr=0.2, optimizer="sgd", val=0.3, patience=3, seed=0)
    val = res.history["val"]
    assert res.stopped_early and "early stopping" in res.reason
    assert len(val) == res.best_epoch + 3 < 200
    assert val[res.best_epoch - 1] == min(val)
    held = {k: v[res.val_index] for k, v in data.items()}
    assert len(res.val_index) == 18
    assert mean_loss(net, res.params, held, "loss") == pytest.approx(min(val), rel=1e-12)


def test_init_is_the_starting_point():
    net = load_text(LINEAR)
    data = {"x": np.ones((4, 2)), "y": np.zeros(4)}
    start = {"v": np.array([3.0, -2.0]), "c": np.array(1.0)}
    res = train(net, data, "loss", epochs=1, batch=4, lr=1e-300, optimizer="sgd", init=start)
    assert res.params["v"].tolist() == [3.0, -2.0]
    assert start["v"].tolist() == [3.0, -2.0]                        # not modified in place


@pytest.mark.parametrize("kwargs, message", [
    ({"loss": "nope"}, "no output or assignment named `nope`"),
    ({"loss": "x"}, "is a declared input"),
    ({"val": 1.0}, "--val"),
    ({"patience": 2}, "--patience needs a validation split"),
    ({"optimizer": "lbfgs"}, "--optimizer"),
    ({"init": {"v": np.ones(3), "c": np.array(0.0)}}, "param `v` has shape (3,)"),
])
def test_bad_arguments_raise(kwargs, message):
    from dcpnet.errors import DcpnetError

    net = load_text(LINEAR)
    args = {"loss": "loss"} | kwargs
    with pytest.raises(DcpnetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        train(net, {"x": np.ones((4, 2)), "y": np.zeros(4)}, args.pop("loss"), **args)


# -- the command line -----------------------------------------------------------------------------------------

@pytest.fixture()
def files(tmp_path):
    net = tmp_path / "icnn.net"
    net.write_text(ICNN)
    data = tmp_path / "data.npz"
    np.savez(data, **icnn_data(64))
    return tmp_path, str(net), str(data)


def test_cli_trains_saves_and_rechecks(files, capsys):
    from dcpnet.train.data import load_params

    tmp, net_path, data = files
    out = tmp / "p.npz"
    rc = main(["train", net_path, "--data", data, "--loss", "loss", "--epochs", "3", "--batch", "16",
               "--out", str(out), "--val", "0.25"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    params = load_params(load_text(ICNN), out)                       # inside every constraint
    assert set(params) == {"W0", "b0", "Wz", "Wx", "b1", "w", "c"}
    assert "every constraint holds exactly" in captured.out
    assert "✓ line 12: convex(f) in x: proved; with the trained params pinned: proved" in captured.out
    assert "✓ line 13: not convex(loss) in x: refuted" in captured.out


def test_cli_plot(files, capsys):
    pytest.importorskip("matplotlib")
    tmp, net_path, data = files
    png = tmp / "curve.png"
    rc = main(["train", net_path, "--data", data, "--loss", "loss", "--epochs", "2", "--out", str(tmp / "p.npz"),
               "--plot", str(png)])
    assert rc == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp.iterdir() if p.name.startswith(".dcpnet-")] == []


def test_cli_nan_stop_saves_last_good_params(tmp_path, capsys):
    net = tmp_path / "n.net"
    net.write_text("input x\nparam w\nloss = (w - 10)^2 * x + sqrt(1 - w)\n")
    np.savez(tmp_path / "d.npz", x=np.ones(8))
    out = tmp_path / "p.npz"
    rc = main(["train", str(net), "--data", str(tmp_path / "d.npz"), "--loss", "loss", "--optimizer", "sgd",
               "--lr", "0.01", "--epochs", "50", "--batch", "4", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 1 and "the loss is nan" in err and "Traceback" not in err
    assert float(np.load(out)["w"]) <= 1


def _bad_data(tmp):
    np.savez(tmp / "missing.npz", x=np.ones((5, 3)))
    np.savez(tmp / "shape.npz", x=np.ones((5, 4)), y=np.ones(5))
    np.savez(tmp / "nan.npz", x=np.full((5, 3), np.nan), y=np.ones(5))
    np.savez(tmp / "count.npz", x=np.ones((5, 3)), y=np.ones(6))
    (tmp / "junk.npz").write_bytes(b"not a zip file")
    np.savez(tmp / "init.npz", W0=np.ones((2, 2)))


@pytest.mark.parametrize("extra, message", [
    (["--loss", "los"], "icnn.net:1:1: error: --loss: no output or assignment named `los` (did you mean `loss`?)"),
    (["--loss", "z1"], "icnn.net:7:1: error: --loss: `z1` has shape [6]"),
    (["--loss", "x"], "icnn.net:1:8: error: --loss: `x` is a declared input"),
    (["--val", "1"], "--val: 1.0 is not allowed (a fraction in [0, 1))"),
    (["--val", "-0.5"], "--val: -0.5 is not allowed"),
    (["--patience", "3"], "--patience needs a validation split"),
    (["--data", "{tmp}/missing.npz"], "missing.npz:1:1: error: input `y` is missing"),
    (["--data", "{tmp}/shape.npz"], "shape.npz:1:1: error: input `x` has shape (5, 4)"),
    (["--data", "{tmp}/nan.npz"], "nan.npz:1:1: error: input `x` holds a non-finite value"),
    (["--data", "{tmp}/count.npz"], "count.npz:1:1: error: input `y` has 6 examples"),
    (["--data", "{tmp}/junk.npz"], "junk.npz:1:1: error: not a valid .npz file"),
    (["--data", "{tmp}/absent.npz"], "absent.npz:1:1: error: cannot read the file"),
    (["--init", "{tmp}/init.npz"], "init.npz:1:1: error: param `W0` has shape (2, 2)"),
    (["--plot", "{tmp}/curve.xyz"], "--plot"),
    (["--out", "{tmp}/no/such/dir/p.npz"], "--out: the folder"),
    (["--epochs", "0"], "--epochs: expected a positive integer"),
    (["--optimizer", "rmsprop"], "invalid choice"),
])
def test_cli_bad_input_exits_2_and_writes_nothing(files, capsys, extra, message):
    tmp, net_path, data = files
    _bad_data(tmp)
    if "--plot" in extra:
        pytest.importorskip("matplotlib")
    extra = [e.replace("{tmp}", str(tmp)) for e in extra]
    options = {"--data": data, "--loss": "loss", "--epochs": "1", "--out": str(tmp / "out.npz")}
    options.update(zip(extra[::2], extra[1::2]))
    args = ["train", net_path] + [t for pair in options.items() for t in pair]
    before = sorted(p.name for p in tmp.iterdir())
    try:
        rc = main(args)
    except SystemExit as exc:                                            # argparse's own errors
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp.iterdir()) == before                # nothing written


def test_cli_loss_without_params(tmp_path, capsys):
    net = tmp_path / "c.net"
    net.write_text("input x\nparam w\ny = w * x\nz = x^2\n")
    np.savez(tmp_path / "d.npz", x=np.ones(3))
    rc = main(["train", str(net), "--data", str(tmp_path / "d.npz"), "--loss", "z", "--out", str(tmp_path / "o.npz")])
    assert rc == 2 and "depends on no param" in capsys.readouterr().err
    assert not (tmp_path / "o.npz").exists()
