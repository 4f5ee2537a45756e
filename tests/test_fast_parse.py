"""The line-template fast path of the parser gives exactly what lark gives from the grammar, or steps aside."""

import pytest
from conftest import CASES, EXAMPLES
from hypothesis import given, settings
from hypothesis import strategies as st
from netgen import networks

from dcpnet import syntax
from dcpnet.errors import DcpnetError

SAMPLES = sorted(CASES.glob("*.net")) + sorted(EXAMPLES.glob("*.net"))


def outcome(text: str, fast: bool):
    try:
        return repr(syntax.parse(text, "t.net", fast=fast).statements)
    except DcpnetError as err:
        return "error: " + err.format()


def assert_same(text: str):
    assert outcome(text, fast=True) == outcome(text, fast=False), text


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_sample_files(path):
    assert_same(path.read_text())


def test_the_fast_path_is_taken_for_repetitive_files():
    text = "input x[2]\n" + "".join(f"param W{k}[2, 2] >= 0\nz{k} = relu(W{k} @ x + 1.5)\n" for k in range(50))
    assert syntax._parse_by_templates(syntax.normalise(text)) is not None
    assert_same(text)


@pytest.mark.parametrize("text", [
    "inputx = 3\n", "x = 1e5\ny = 15\n", "input x[1e5]\n", "y = x^2^3\n", "y = x^-1 # c\n", "y = - - x\n",
    "check not convex(y) in inputs\n", "input in\n", "y = x[3]\nz = x[ 3 ]\n", "y = 2.\nz = .5e-3\n",
    "y = 1e-400 * x\n", "atom f(t) = t^2\n", "output a, b\n", "y = x $ 2\n", "y = (x\n", "input x in [-1, -2]\n",
    "y = x ** 2\n", "\ty\t=\tx\n", "y = x\fz\n", "input x >= -0\n",
])
def test_tricky_lines(text):
    assert_same(text)


@settings(max_examples=200, deadline=None)
@given(networks(max_layers=6))
def test_random_networks(case):
    assert_same(case[0])


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SAMPLES).map(lambda p: p.read_text()), st.data())
def test_mutated_files(text, data):
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, max(len(text) - 1, 0)))
        piece = data.draw(st.sampled_from(["", " ", "(", ")", "-", "^", "1", "x", "in", "[", "]", ",", "#", "e5",
                                           "convex", "\n", ">=", "@", "*", "2.5"]))
        cut = data.draw(st.integers(0, 2))
        text = text[:i] + piece + text[i + cut:]
    assert_same(text)
