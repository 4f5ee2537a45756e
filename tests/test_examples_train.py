"""Each training example runs end to end at small scale, and what its header claims holds for the trained params."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from example_scripts import all_hold, example

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def test_icnn_diabetes(capsys):
    pytest.importorskip("sklearn")
    out = example("train_icnn_diabetes").main(["--small"])
    params = out["result"].params
    assert params["Wz"].min() >= 0 and params["w"].min() >= 0
    assert all_hold(out["checks"])
    assert out["max_gap"] <= 1e-12 * (1 + out["scale"])              # convex in x along every test segment
    assert out["test_mse"] < 0.7                                     # standardized target: variance 1
    assert "convex(f) in x: proved" in capsys.readouterr().out


def test_softmax_digits(capsys):
    pytest.importorskip("sklearn")
    out = example("train_softmax_digits").main(["--small"])
    assert all_hold(out["checks"])
    assert out["dcpnet"]["accuracy"] > 0.9 and out["sklearn"]["accuracy"] > 0.9
    assert 1.0 <= out["ratio"] < 2.0                                 # sklearn solves the same convex problem
    assert "scikit-learn" in capsys.readouterr().out


def test_seed_relu(capsys):
    out = example("train_seed_relu").main(["--small"])
    nonneg, signed = out["nonneg"], out["signed"]
    assert all_hold(nonneg["checks"]) and all_hold(signed["checks"])
    assert nonneg["accuracy"] > 0.85
    assert nonneg["gap_w1"] <= 1e-12                                 # proved convex in W1: no segment above
    assert nonneg["gap_joint"] > 1e-6                                # refuted jointly: a segment shows it
    for run in (nonneg, signed):
        assert min(v.min() for v in run["result"].params.values()) >= 0


def test_seed_relu_as_a_script():
    done = subprocess.run([sys.executable, os.path.join(EXAMPLES, "train_seed_relu.py"), "--small"],
                          check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "NOT" not in done.stdout and done.stdout.count("every one holds exactly") == 2


def test_example_net_files_check(capsys):
    from dcpnet.cli import main

    for name in ("icnn_diabetes.net", "softmax_digits.net", "seed_relu.net", "seed_relu_signed.net"):
        assert main(["check", os.path.join(EXAMPLES, name), "--budget", "2"]) == 0, name
    assert "refuted" in capsys.readouterr().out


def test_headers_say_what_dcpnet_proves():
    for name in ("train_icnn_diabetes", "train_softmax_digits", "train_seed_relu"):
        with open(os.path.join(EXAMPLES, name + ".py"), encoding="utf-8") as fh:
            header = fh.read().split('"""')[1]
        assert "What dcpnet proves" in header, name
