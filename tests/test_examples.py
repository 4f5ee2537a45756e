"""Every network in examples/ parses and builds, and says in its header what dcpnet should find."""
from __future__ import annotations

from pathlib import Path

import pytest

from dcpnet.graph import load

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.net"))
FRESH = ["icnn", "seed_weights", "logistic_regression", "softmax_regression", "huber_regression", "domains"]


def test_the_examples_are_there():
    names = {p.stem for p in EXAMPLES}
    assert set(FRESH) <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_builds(path):
    net = load(str(path))
    assert net.nodes and net.variables and net.outputs
    assert path.read_text().startswith("#"), "an example opens with a comment saying what it shows"
    lines = path.read_text().splitlines()
    check_lines = [i + 1 for i, line in enumerate(lines) if line.strip().startswith("check ")]
    assert [c.pos.line for c in net.checks] == check_lines


@pytest.mark.parametrize("stem", FRESH)
def test_fresh_examples_state_their_claims(stem):
    """The header names what is proved and what is refuted, and both kinds of check lines are present."""
    path = next(p for p in EXAMPLES if p.stem == stem)
    net = load(str(path))
    header = path.read_text().split("\n\n")[0]
    assert "dcpnet proves:" in header and "dcpnet refutes:" in header
    assert any(c.negated for c in net.checks) and any(not c.negated for c in net.checks)
