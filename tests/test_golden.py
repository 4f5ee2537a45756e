"""What the command line prints, exactly, at a fixed console width (and to a pipe): the default table with
its trees, a refuted and an unknown report with their hints, the JSON report, a training summary and a
bad-input error. When the output should change, regenerate the files and read the diff:

    DCPNET_REGEN_GOLDEN=1 python -m pytest tests/test_golden.py
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import EXAMPLES, GOLDEN, ROOT

from dcpnet.cli import main

REGEN = os.environ.get("DCPNET_REGEN_GOLDEN") == "1"
INPUTS = GOLDEN / "inputs"


def rel(path) -> str:
    return os.path.relpath(path, ROOT)


CASES = {   # golden file -> (argv, exit code, stream)
    "seed_table.txt": (["check", rel(EXAMPLES / "seed_table.net"), "--width", "100", "--tree"], 0, "out"),
    "unknown_and_refuted.txt": (["check", rel(INPUTS / "unknown_hint.net"), "--width", "100", "--budget", "0.5"],
                                1, "out"),
    "seed_square.json": (["check", rel(EXAMPLES / "seed_square.net"), "--json"], 0, "out"),
    "bad_shape.txt": (["check", rel(INPUTS / "bad_shape.net")], 2, "err"),
}


def compare(name: str, text: str) -> None:
    path = GOLDEN / name
    if REGEN:
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs (DCPNET_REGEN_GOLDEN=1 rewrites it)"


@pytest.mark.parametrize("name", sorted(CASES))
def test_cli_output(name, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)                    # file names in the output are relative to the repository
    argv, code, stream = CASES[name]
    assert main(argv) == code
    out, err = capsys.readouterr()
    compare(name, out if stream == "out" else err)


def test_train_summary(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(64, 3))
    np.savez("data.npz", x=x, y=np.abs(x).sum(axis=1))
    net = (tmp_path / "icnn.net")
    net.write_text("input x[3]\ninput y\nparam W0[4, 3], b0[4]\nparam Z[4, 4] >= 0, a[4] >= 0\n"
                   "z1 = softplus(W0 @ x + b0)\nf = a @ relu(Z @ z1)\nloss = (f - y)^2\n"
                   "check convex(f) in x\n")
    assert main(["train", "icnn.net", "--data", "data.npz", "--loss", "loss", "--epochs", "3", "--batch", "16",
                 "--out", "params.npz"]) == 0
    compare("train_summary.txt", capsys.readouterr().out)
    assert main(["train", "icnn.net", "--data", "data.npz", "--loss", "loss", "--out", "params.npz"]) == 2
    assert "pass --force to overwrite it" in capsys.readouterr().err


def test_piped_output_is_neither_wrapped_nor_padded_nor_coloured():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "", "NO_COLOR": "", "FORCE_COLOR": ""}
    proc = subprocess.run([sys.executable, "-m", "dcpnet", "check", rel(EXAMPLES / "seed_square.net")], cwd=ROOT,
                          env=env, capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) > 120                  # the long reason stays on one line
    assert all(line == line.rstrip() for line in lines) and "\x1b[" not in proc.stdout
    compare("seed_square_piped.txt", proc.stdout)
    forced = subprocess.run([sys.executable, "-m", "dcpnet", "check", rel(EXAMPLES / "seed_square.net"), "--color"],
                            cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=120)
    assert "\x1b[" in forced.stdout


def test_version_names_the_package(capsys):
    from importlib import metadata

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out.strip()
    try:
        want = metadata.version("dcpnet")
    except metadata.PackageNotFoundError:      # a source checkout that was never installed
        import dcpnet

        want = dcpnet.__version__
    assert out == f"dcpnet {want}"
