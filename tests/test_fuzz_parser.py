"""Random and mutated `.net` texts through the parser and the semantic pass (issue 2, "Must show").

Every text either builds a Network or raises DcpnetError whose diagnostics all carry a line >= 1, a column
>= 1 and a message. Nothing else may escape: no RecursionError, no lark exception, no ValueError.
"""
from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from dcpnet.errors import DcpnetError
from dcpnet.graph import Network, load_text

ROOT = Path(__file__).resolve().parent.parent
from conftest import CASES as CONFORMANCE

SEEDS = [
    ("input x[4]\ninput y in [0, 1]\nparam W0[8, 4], b0[8]\nparam Wz[8, 8] >= 0\nparam w[8] >= 0\n"
     "z1 = relu(W0 @ x + b0)\nz2 = softplus(Wz @ z1 + b0)\nf = w @ z2\nloss = (f - y)^2\n"
     "output f, loss\ncheck convex(f) in x\ncheck not convex(loss) in x\ncheck convex(z1) in W0\n"),
    ("input t\ninput s >= 0.1\natom sp(u) = log(1 + exp(u))\natom cube(u) = u^3\n"
     "f1 = sp(2 * t + 1)\nf3 = cube(s) - -t^2 + t**-1\nf6 = sp(sp(t))\ncheck convex(f6) in t\n"),
    ("input x[6]\nparam A[4, 6], b[4]\nm = max(relu(A @ x + b))\nq = quad_over_lin(x, 1 + sum(x))\n"
     "n = maximum(x[0], x[5], 0) + leaky_relu(A @ x, -0.5)[3]\ncheck concave(n) in params\n"),
]


def corpus() -> list[str]:
    files = sorted(ROOT.glob("examples/*.net"))
    files += sorted(CONFORMANCE.glob("*.net"))
    return SEEDS + [f.read_text() for f in files]


CORPUS = corpus()
TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+\.?\d*(?:[eE][+-]?\d+)?|\*\*|>=|<=|\s+|.", re.DOTALL)

names = hs.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True) | hs.sampled_from(
    ["x", "y", "W", "relu", "sum", "maximum", "leaky_relu", "input", "param", "atom", "output", "check",
     "not", "in", "convex", "inputs", "params", "nan", "inf", "NaN", "e", "E", "_"])
numbers = hs.sampled_from(
    ["0", "1", "-1", "2.5", ".5", "5.", "1e999", "-1e999", "1e-999", "1e308", "1.8e308", "4.9e-324", "0e0",
     "9" * 400, "0" * 50 + "1", "1" + "0" * 5000, "1e", "1e+", "1.2.3", "00", "-0", "+0", "--1", "1_000"]
) | hs.floats(allow_nan=False).map(repr) | hs.integers(-(10**30), 10**30).map(str)
symbols = hs.sampled_from(list("()[],=+-*/@^#<>\n\r\t .") + ["**", ">=", "<=", "\r\n", " in ", "\x00", "é",
                                                            "\u2028", "\ufeff", "·", "\f", "\v", "\\"])
tokens = names | numbers | symbols


def assert_clean(text: str) -> None:
    """The property: a Network, or DcpnetError with positioned diagnostics (and a printable report)."""
    try:
        net = load_text(text, "fuzz.net")
    except DcpnetError as err:
        assert err.diagnostics
        n_lines = text.count("\n") + text.count("\r") + 1
        for d in err.diagnostics:
            assert isinstance(d.line, int) and isinstance(d.col, int)
            assert 1 <= d.line <= n_lines and d.col >= 1, d
            assert d.message and d.file == "fuzz.net"
        assert err.format().startswith("fuzz.net:")
        return
    assert isinstance(net, Network)
    for node in net.nodes:
        assert all(a < node.id for a in node.args)
        assert all(isinstance(n, int) and n > 0 for n in node.shape)
    assert all(o in net.names for o in net.outputs)


def fuzz(n: int) -> settings:
    return settings(max_examples=n, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@fuzz(600)
@given(hs.lists(tokens, max_size=40).map("".join))
def test_random_token_soup(text):
    assert_clean(text)


@fuzz(200)
@given(hs.text(max_size=80))
def test_random_unicode_text(text):
    assert_clean(text)


@fuzz(700)
@given(hs.sampled_from(CORPUS), hs.lists(hs.tuples(hs.sampled_from(["del", "ins", "swap", "dup"]),
                                                   hs.integers(0, 10**6), hs.integers(0, 10**6), hs.characters()),
                                         min_size=1, max_size=4))
def test_character_mutations(base, edits):
    text = base
    for kind, u, v, ch in edits:
        if not text:
            break
        i, j = u % len(text), v % len(text)
        if kind == "del":
            text = text[:i] + text[i + 1:]
        elif kind == "ins":
            text = text[:i] + ch + text[i:]
        elif kind == "swap":
            chars = list(text)
            chars[i], chars[j] = chars[j], chars[i]
            text = "".join(chars)
        else:
            text = text[:i] + text[i:j] + text[i:]
    assert_clean(text)


@fuzz(700)
@given(hs.sampled_from(CORPUS), hs.lists(hs.tuples(hs.sampled_from(["del", "ins", "swap", "replace", "dup"]),
                                                   hs.integers(0, 10**6), hs.integers(0, 10**6), tokens),
                                         min_size=1, max_size=5))
def test_token_mutations(base, edits):
    toks = TOKEN.findall(base)
    for kind, u, v, tok in edits:
        if not toks:
            break
        i, j = u % len(toks), v % len(toks)
        if kind == "del":
            del toks[i]
        elif kind == "ins":
            toks.insert(i, tok)
        elif kind == "swap":
            toks[i], toks[j] = toks[j], toks[i]
        elif kind == "replace":
            toks[i] = tok
        else:
            toks.insert(i, toks[j])
    assert_clean("".join(toks))


@fuzz(400)
@given(hs.sampled_from(CORPUS), hs.booleans(), hs.lists(numbers | names, min_size=1, max_size=12))
def test_numbers_and_names_replaced(base, numbers_not_names, literals):
    """The numbers (or the names) of a file replaced, in turn, by random literals: huge, tiny, malformed."""
    pattern = r"\d+\.?\d*(?:[eE][+-]?\d+)?" if numbers_not_names else r"[A-Za-z_][A-Za-z0-9_]*"
    turn = itertools.cycle(literals)
    assert_clean(re.sub(pattern, lambda _: next(turn), base))


WRAPPERS = ["(", "relu(", "-", "maximum(x, ", "sum(", "leaky_relu(", "2 * (", "x + (", "sq(", "x^("]


@fuzz(30)
@given(hs.integers(1, 3000), hs.lists(hs.sampled_from(WRAPPERS), min_size=1, max_size=3),
       hs.sampled_from(["", ")", "))", ", 0.5)"]), hs.booleans())
def test_deep_nesting(depth, wrappers, extra, balanced):
    """Thousands of nested parentheses and calls: no RecursionError, in the parser or the builder."""
    opening = "".join(wrappers[k % len(wrappers)] for k in range(depth))
    closing = ")" * opening.count("(") if balanced else ")" * (depth // 2)
    text = f"input x[3]\natom sq(u) = u^2\ny = {opening}x{closing}{extra}\ncheck convex(y) in x\n"
    assert_clean(text)


@pytest.mark.parametrize("depth", [3000, 20000])
def test_very_deep_nesting_builds(depth):
    net = load_text("input x\ny = " + "(" * depth + "relu(-x)" + ")" * depth + "\n")
    assert net.node("y").op == "scalar"
    net = load_text("input x\ny = " + "exp(" * depth + "x" + ")" * depth + "\n")
    assert len(net.nodes) == depth + 1


HAND_PICKED = [
    "input x\ny = x * 1e999\n", "input x >= 1e999\n", "input x in [nan, 1]\n", "input nan\ny = nan\n",
    "input x\ny = x^1e400\n", "input x[" + "9" * 5000 + "]\n", "input x[3]\ny = x[" + "9" * 5000 + "]\n",
    "\ufeff\ufeffinput x\n", "input x\r\r\ny = x\n", "input x\x00\n", "y = " + "-" * 5000 + "1\n",
    "input x\ny = x^" + "2^" * 3000 + "2\n", "input x\ny = x^(" * 500 + "2" + ")" * 500 + "\n",
]


@pytest.mark.parametrize("text", HAND_PICKED, ids=[str(i) for i in range(len(HAND_PICKED))])
def test_hand_picked_edge_cases(text):
    assert_clean(text)
