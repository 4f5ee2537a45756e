"""The seed's references as examples: convex neural networks (Bengio et al. 2005, Bach 2014) and L1-regularised
logistic regression (Yuan et al. 2010). Every check line of their files holds under `dcpnet check`, and the
training scripts (at small scale) reach scikit-learn's objective on the same convex problem. Every other example
file passes `dcpnet check` too."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from example_scripts import all_hold, example

from dcpnet.cli import main as cli
from dcpnet.graph import load

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
FILES = ["convex_nn_bengio.net", "convex_nn_bach.net", "l1_logistic.net"]


@pytest.mark.parametrize("name", FILES)
def test_every_check_line_holds(name, capsys):
    path = os.path.join(EXAMPLES, name)
    assert cli(["check", path, "--json", "--budget", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    claimed = [r for r in report["results"] if r["claim"] is not None]
    assert report["ok"] and len(claimed) == len(load(path).checks) >= 5
    assert all(r["holds"] for r in claimed)
    negated = [r for r in claimed if r["claim"].startswith("not ")]
    assert negated and all(r[r["claim"][4:]]["verdict"] == "refuted" for r in negated)
    assert all(r[r["claim"]]["verdict"] == "proved" for r in claimed if r not in negated)


@pytest.mark.parametrize("name", sorted(n for n in os.listdir(EXAMPLES) if n.endswith(".net")))
def test_every_example_file_checks(name, capsys):
    """Every .net file of examples/ (these and the others) passes `dcpnet check`: its check lines hold."""
    assert cli(["check", os.path.join(EXAMPLES, name), "--budget", "2"]) == 0, capsys.readouterr().out


@pytest.mark.parametrize("name", FILES)
def test_headers_name_the_paper_and_the_claims(name):
    with open(os.path.join(EXAMPLES, name), encoding="utf-8") as fh:
        header = fh.read().split("\n\n")[0]
    assert "dcpnet proves:" in header and "dcpnet refutes:" in header
    assert any(year in header for year in ("2005", "2014", "2010"))


def test_convex_in_the_output_layer_only():
    """Convex in (w, b), refuted in the hidden weights V: the claims of both papers' files, for every output."""
    for name in ("convex_nn_bengio.net", "convex_nn_bach.net"):
        net = load(os.path.join(EXAMPLES, name))
        claims = {(("not " if c.negated else "") + c.prop, c.target, tuple(n for n, _ in c.wrt)) for c in net.checks}
        assert ("convex", "loss", ("params",)) in claims
        assert ("not convex", "loss", ("V",)) in claims and ("not convex", "loss", ("w", "V")) in claims
        assert set(net.params) == {"w", "b"} and "V" in net.inputs


def test_convex_nn_training_matches_scikit_learn(capsys):
    pytest.importorskip("sklearn")
    out = example("train_convex_nn").main(["--small"])
    for run in (out["bengio"], out["bach"]):
        assert all_hold(run["checks"])
        # a convex problem: Adam cannot go below the minimum scikit-learn finds, and gets close to it
        assert 0.999 <= run["ratio"] < 1.05
        assert run["gap_w"] <= 1e-9                    # convex in (w, b): no midpoint above the chord
        assert run["gap_v"] > 1e-6 and run["above_v"] > 0   # not convex in V: some midpoint above the chord
    assert out["bengio"]["dcpnet"]["accuracy"] > 0.9 and out["bengio"]["sklearn"]["accuracy"] > 0.9
    assert out["bach"]["dcpnet"]["r2"] > 0.2
    assert out["bach"]["sklearn"]["nonzero"] < 64       # the L1 penalty drops hidden units
    text = capsys.readouterr().out
    assert "Bengio" in text and "Bach" in text and "NOT" not in text


def test_l1_logistic_matches_scikit_learn(capsys):
    pytest.importorskip("sklearn")
    out = example("train_l1_logistic").main(["--small"])
    assert all_hold(out["checks"])
    ours, sk = out["dcpnet"], out["sklearn"]
    # the scaling: the file's mean loss times C n is scikit-learn's objective, computed apart from dcpnet
    for row in (ours, sk):
        assert row["objective"] * out["C"] * out["n"] == pytest.approx(row["sk_objective"], rel=1e-9)
    assert 0.999 <= out["ratio"] < 1.03
    assert ours["accuracy"] > 0.9 and sk["accuracy"] > 0.9
    assert sk["kept"] < 30                              # L1 makes the solution sparse
    assert "scikit-learn" in capsys.readouterr().out


def test_l1_logistic_as_a_script():
    pytest.importorskip("sklearn")
    done = subprocess.run([sys.executable, os.path.join(EXAMPLES, "train_l1_logistic.py"), "--small"],
                          check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "NOT" not in done.stdout and "objective ratio" in done.stdout


def test_headers_of_the_scripts_say_what_dcpnet_proves():
    for name in ("train_convex_nn", "train_l1_logistic"):
        with open(os.path.join(EXAMPLES, name + ".py"), encoding="utf-8") as fh:
            header = fh.read().split('"""')[1]
        assert "What dcpnet proves" in header, name
