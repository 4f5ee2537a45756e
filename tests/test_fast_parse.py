"""The line-template fast path of the parser gives exactly what lark gives from the grammar, or steps aside."""

from contextlib import contextmanager

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


@contextmanager
def patterns_at_once():
    """Every shape gets its pattern and generated filler when first met, so each line whose predecessor's
    shape was met before is read by the guessed pattern (normally only shapes met often are)."""
    saved = syntax.PATTERN_AFTER, syntax._shapes
    syntax.PATTERN_AFTER, syntax._shapes = 1, {}
    try:
        yield
    finally:
        syntax.PATTERN_AFTER, syntax._shapes = saved


def assert_same(text: str):
    by_lark = outcome(text, fast=False)
    assert outcome(text, fast=True) == by_lark, text
    with patterns_at_once():
        assert outcome(text, fast=True) == by_lark, text
        assert outcome(text, fast=True) == by_lark, text      # the guesses of the first read, now made


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_sample_files(path):
    assert_same(path.read_text())


def test_the_fast_path_is_taken_for_repetitive_files():
    text = "input x[2]\n" + "".join(f"param W{k}[2, 2] >= 0\nz{k} = relu(W{k} @ x + 1.5)\n" for k in range(50))
    assert syntax._parse_by_templates(syntax.normalise(text)) is not None
    assert_same(text)


def test_a_repetitive_file_is_read_by_patterns():
    text = "input x[2]\n" + "".join(f"param W{k}[2, 2] >= 0\nz{k} = relu(W{k} @ x + 1.5)\n" for k in range(50))
    syntax.parse(text)
    shape = syntax._shapes[syntax._shape_key(syntax._lexemes("z1 = relu(W1 @ x + 1.5)"))]
    assert shape.pattern is not None and shape.then is not None and shape.then.pattern is not None
    assert_same(text)


def scanned(line: str):
    lexemes = syntax._lexemes(line)
    if lexemes is None or not lexemes or len(lexemes) > syntax._FAST_MAX_LEXEMES:
        return None
    return syntax._shape_key(lexemes), [(text, col) for _, text, col in lexemes]


def matched(key: tuple, line: str):
    m = syntax._line_pattern(key).fullmatch(line)
    return None if m is None else [(m.group(i), m.start(i) + 1) for i in range(1, len(key) + 1)]


TRICKY_LINES = [
    "y = x ** 2", "y = x * * 2", "y = x ***2", "y = 1e5", "y = 15", "y = 1.5e", "y = 1e+5x", "y = .5.5",
    "inputx = 3", "input x", "y = in2 + input_", "y=x#c", "y = x # c", "y = x\f\v", "y = x ^ 2.", "x = 1٣",
    "y = x[3]", "y = x[ 3 ]", "y = x[3.0]", "check not convex(y) in inputs", "y = x>=2", "y = x > 2",
    "param W[2,2]>=0,b[2]<=-1.5", "y = 2x", "y = x2", "y = 0x1F", "y = 1_000", "y = x $ 2", "y = 1.5",
    "input x = 3", "y = x[3:4]", "y = x[3 : 4.]", "y = x[3:4e0]", "y = in + x", "y = inn + x", "y = -2",
    "y = x 2", "y = 1 .5", "y = 1 e5", "y = 1. 5", "y = 1 5", "y = in put",
]
LINES = [line for path in SAMPLES for line in path.read_text().split("\n")] + TRICKY_LINES


def test_the_patterns_of_tricky_lines():
    for first in filter(scanned, TRICKY_LINES):
        key = scanned(first)[0]
        for other in TRICKY_LINES:
            found = scanned(other)
            assert matched(key, other) == (found[1] if found is not None and found[0] == key else None), \
                (first, other)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(LINES), st.sampled_from(LINES), st.data())
def test_a_shape_pattern_matches_the_lines_of_its_shape_and_no_other(first, other, data):
    """The pattern of a line's shape matches another line exactly when the scanner gives that line the same
    shape, and its groups are the scanner's lexemes (text and column)."""
    other = data.draw(st.sampled_from([first, other]))      # half the time a variant of the first line
    for _ in range(data.draw(st.integers(0, 2))):
        i = data.draw(st.integers(0, len(other)))
        other = other[:i] + data.draw(st.sampled_from(["", " ", "2", "x", ".", "e", "*", "=", "#", "in", "_"])) \
            + other[i + data.draw(st.integers(0, 1)):]
    made = scanned(first)
    if made is None:
        return
    key, _ = made
    found = scanned(other)
    expected = found[1] if found is not None and found[0] == key else None
    assert matched(key, other) == expected, (first, other)


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
