"""The semantic pass: shapes, hash-consing, outputs, the Network API, and semantic errors at the exact
line:col SPEC section 3 asks for (the operator of a binary operation, the name of a call, the unknown name)."""
from __future__ import annotations

import math
from fractions import Fraction

import pytest

from dcpnet import syntax as st
from dcpnet.errors import DcpnetError
from dcpnet.graph import MAX_ENTRIES, Network, broadcast_shape, load, load_text, matmul_shape
from dcpnet.lattice import Interval

HEADER = "input x[3], t, s >= 0\nparam W[4, 3], V[3, 2], b[4], c in [-1, 2]\n"


def net_of(body: str) -> Network:
    return load_text(HEADER + body)


def shape_of(src: str) -> tuple[int, ...]:
    return net_of(f"y = {src}\n").node("y").shape


def errors(text: str) -> list[tuple[int, int, str]]:
    with pytest.raises(DcpnetError) as info:
        load_text(text, "f.net")
    diags = info.value.diagnostics
    assert all(d.file == "f.net" and d.line >= 1 and d.col >= 1 for d in diags)
    return [(d.line, d.col, d.message) for d in diags]


def error(text: str) -> tuple[int, int, str]:
    (e,) = errors(text)
    return e


# -- shapes --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("src, shape", [
    ("t", ()), ("x", (3,)), ("W", (4, 3)),
    ("x + 1", (3,)), ("2 * x - t", (3,)), ("t / x", (3,)), ("-x", (3,)), ("x^2", (3,)),
    ("W * 2 + c", (4, 3)),
    ("W @ x", (4,)), ("W @ V", (4, 2)), ("x @ x", ()), ("x @ V", (2,)), ("W @ x + b", (4,)),
    ("relu(W @ x + b)", (4,)), ("leaky_relu(W, 0.1)", (4, 3)), ("sqrt(s)", ()),
    ("sum(x)", ()), ("max(W @ x)", ()), ("norm2(x - 1)", ()), ("log_sum_exp(b)", ()), ("mean(W)", ()),
    ("quad_over_lin(x, s + 1)", ()), ("sum_squares(x)", ()),
    ("maximum(x, 0)", (3,)), ("minimum(t, x, 1)", (3,)), ("maximum(t, s)", ()),
    ("x[0]", ()), ("(W @ x)[3]", ()), ("b[1] * x", (3,)),
])
def test_shapes(src, shape):
    assert shape_of(src) == shape


def test_shape_rules():
    assert broadcast_shape((), (3,)) == (3,) and broadcast_shape((2, 2), ()) == (2, 2)
    assert broadcast_shape((3,), (4,)) is None and broadcast_shape((3,), (3, 1)) is None
    assert matmul_shape((4, 3), (3,)) == (4,) and matmul_shape((3,), (3,)) == ()
    assert matmul_shape((4, 3), (3, 2)) == (4, 2) and matmul_shape((3,), (3, 5)) == (5,)
    assert matmul_shape((), (3,)) is None and matmul_shape((4, 3), (4,)) is None


# -- hash-consing and outputs --------------------------------------------------------------------------
def test_equal_subexpressions_are_one_node():
    net = net_of("a = relu(W @ x + b)\nb2 = relu(W @ x + b)\ny = a + relu(W@x+b)\n")
    assert net.names["a"] == net.names["b2"]
    y = net.node("y")
    assert y.args == (net.names["a"], net.names["a"])
    relus = [n for n in net.nodes if n.op == "scalar" and n.attrs == ("relu",)]
    assert len(relus) == 1 and net.node("a").names == ["a", "b2"]


def test_a_param_tied_across_layers_is_one_leaf():
    net = load_text("input x[3]\nparam W[3, 3]\nz1 = relu(W @ x)\nz2 = relu(W @ z1)\nz3 = relu(W @ z2)\n")
    w = net.variables["W"].node
    matmuls = [n for n in net.nodes if n.op == "matmul"]
    assert len(matmuls) == 3 and all(n.args[0] == w for n in matmuls)
    assert [n.id for n in net.nodes if n.op == "var"] == [net.variables["x"].node, w]
    z3 = net.names["z3"]
    assert w in net.ancestors(z3) and net.ancestors(z3) == sorted(net.ancestors(z3))


def test_constants_are_shared_and_distinguished():
    net = net_of("y = 2 * x + 2 * t + 3\n")
    consts = [n.attrs for n in net.nodes if n.op == "const"]
    assert consts == [(2.0, Fraction(2)), (3.0, Fraction(3))]   # (nearest double, the decimal written)


def test_default_output_is_the_last_assignment():
    assert net_of("a = x\nbb = relu(x)\n").outputs == ["bb"]
    assert net_of("a = x\nbb = relu(x)\noutput a\n").outputs == ["a"]
    assert net_of("a = x\nbb = t\noutput bb, a, bb\noutput a\n").outputs == ["bb", "a"]
    assert load_text("input x\n").outputs == []


def test_topological_order_and_labels():
    net = net_of("h = relu(W @ x + b)\nf = sum(h) + 1\n")
    for n in net.nodes:
        assert all(a < n.id for a in n.args)
    f = net.node("f")
    assert f.text == "sum(h) + 1" and f.label == "f"
    assert net.node("x").label == "x"


def test_network_api():
    net = load_text("input x[2] >= 0, y in [0, 1]\nparam W[2, 2] <= 3, c\natom sq(u) = u^2\n"
                    "f = sq(W @ x) + c\ng = leaky_relu(f, 0.5)\noutput f, g\n"
                    "check convex(f) in x\ncheck not affine(g) in params, y\n")
    assert net.inputs == ["x", "y"] and net.params == ["W", "c"]
    assert net.variables["x"].bounds == Interval(0, math.inf)
    assert net.variables["y"].bounds == Interval(0, 1)
    assert net.variables["W"].bounds == Interval(-math.inf, 3)
    assert net.variables["c"].bounds == Interval(-math.inf, math.inf)
    assert (net.variables["W"].kind, net.variables["W"].shape, net.variables["W"].line) == ("param", (2, 2), 2)
    assert net.outputs == ["f", "g"]
    assert [(c.negated, c.prop, c.target) for c in net.checks] == [(False, "convex", "f"), (True, "affine", "g")]
    assert list(net.atom_defs) == ["sq"]
    assert net.resolve_wrt(["params", "y", "W"]) == ["W", "c", "y"]
    assert net.resolve_wrt(["inputs"]) == ["x", "y"]
    g = net.node("g")
    assert g.attrs == ("leaky_relu", 0.5) and net.scalar_atom(g.attrs).name == "leaky_relu"
    sq = net.nodes[net.node("f").args[0]]
    assert sq.op == "scalar" and sq.attrs == ("user", "sq")
    assert net.scalar_atom(("relu",)).name == "relu"
    assert net.scalar_atom(("power", 2.0)).name == "power"


def test_index_and_negative_literals_and_powers():
    net = net_of("y = -x[2]^2 + x^-1 + t^0.5\n")
    ops = {n.op for n in net.nodes}
    assert {"index", "neg", "scalar"} <= ops
    powers = sorted(n.attrs[1] for n in net.nodes if n.op == "scalar" and n.attrs[0] == "power")
    assert powers == [-1.0, 0.5, 2.0]
    neg = next(n for n in net.nodes if n.op == "neg")
    assert net.nodes[neg.args[0]].attrs == ("power", 2.0)   # -x[2]^2 is -(x[2]^2)


def test_load_reads_a_file(tmp_path):
    p = tmp_path / "n.net"
    p.write_bytes(b"input x\r\ny = relu(x)\r\n")
    net = load(str(p))
    assert net.outputs == ["y"] and net.source.file == str(p)


def test_deep_and_long_expressions_build_without_recursion():
    depth = 4000
    net = load_text("input x\ny = " + "relu(" * depth + "x" + ")" * depth + "\n")
    assert len(net.nodes) == depth + 1
    net = load_text("input x\ny = " + "(" * depth + "-x" + ")" * depth + " + 1\n")
    assert net.node("y").op == "add"
    net = load_text("input x\ny = x" + " + x * 2" * depth + "\n")
    assert net.node("y").op == "add"


def test_a_large_chain_builds():
    lines = ["input z0[2]", "param W[2, 2]"] + [f"z{k} = relu(W @ z{k - 1})" for k in range(1, 3001)]
    net = load_text("\n".join(lines))
    assert net.outputs == ["z3000"] and len(net.ancestors(net.names["z3000"])) == 2 * 3000 + 2


# -- semantic errors at line:col -----------------------------------------------------------------------
@pytest.mark.parametrize("text, line, col, words", [
    # unknown names and functions, with suggestions
    ("input x[3]\ny = rleu(x)\n", 2, 5, "unknown function `rleu` (did you mean `relu`?)"),
    ("input value\ny = 2 * valeu\n", 2, 9, "unknown name `valeu` (did you mean `value`?)"),
    ("input x\ny = x + qqq\n", 2, 9, "unknown name `qqq`"),
    ("input x\ny = x\nz = y(x)\n", 3, 5, "`y` is a value, not a function"),
    ("input x\ny = relu + x\n", 2, 5, "`relu` is a function"),
    # definitions
    ("input x\nx = 2\n", 2, 1, "`x` is already defined (line 1)"),
    ("input x, y\nparam y\n", 2, 7, "`y` is already defined (line 1)"),
    ("input x\ny = x\ny = 2 * x\n", 3, 1, "already defined (line 2)"),
    ("input x\ny = z + x\nz = x\n", 2, 5, "unknown name `z` (it is defined later"),
    ("input inputs\n", 1, 7, "`inputs` is reserved"),
    ("atom relu(u) = u\n", 1, 6, "built-in function"),
    # arity and constant arguments
    ("input x\ny = relu(x, x)\n", 2, 5, "`relu` takes 1 argument, got 2"),
    ("input x\ny = sum()\n", 2, 5, "`sum` takes 1 argument, got 0"),
    ("input x\ny = maximum(x)\n", 2, 5, "`maximum` needs at least two arguments"),
    ("input x\ny = leaky_relu(x)\n", 2, 5, "`leaky_relu` takes 2 arguments"),
    ("input x, a\ny = leaky_relu(x, a)\n", 2, 19, "second argument of `leaky_relu` must be a number"),
    ("input x\ny = leaky_relu(x, 2 * 0.1)\n", 2, 21, "must be a number"),
    ("input x\ny = quad_over_lin(x, x, x)\n", 2, 5, "takes 2 arguments"),
    # shapes: the operator, or the call's name
    ("input x[5]\nparam W[3, 4]\n\ny = W @ x\n", 4, 7, "shape mismatch: [3, 4] @ [5]"),
    ("input x[3], z[4]\ny = relu(x)   +  z\n", 2, 15, "shape mismatch: [3] + [4]"),
    ("input x[3], z[4]\ny = x * z\n", 2, 7, "shape mismatch: [3] * [4]"),
    ("input x[3], t\ny = t @ x\n", 2, 7, "shape mismatch: scalar @ [3]"),
    ("input x[3], z[4]\ny = maximum(x, z)\n", 2, 5, "shape mismatch in `maximum`"),
    ("input x[3]\ny = quad_over_lin(x, x)\n", 2, 5, "second argument of `quad_over_lin` must be a scalar"),
    # indexing
    ("input x[3]\ny = x[3]\n", 2, 7, "index 3 is out of range for `x` of size 3"),
    ("input x[3]\ny = x[  7]\n", 2, 9, "index 7 is out of range"),
    ("input t\ny = t[0]\n", 2, 6, "indexing needs a vector, but `t` is a scalar"),
    ("param W[2, 2]\ny = W[0]\n", 2, 6, "is a matrix [2, 2]"),
    # numbers
    ("input x\ny = x * 1e999\n", 2, 9, "not a finite number"),
    ("input x\ny = x ^ 1e400\n", 2, 7, "exponent inf is not a finite number"),
    ("input x\ny = x^10^400\n", 2, 6, "not a finite number"),
    ("input x\ny = x^(-8)^0.5\n", 2, 6, "exponent nan"),
    # declarations
    ("input x[0]\n", 1, 9, "sizes must be positive integers, got 0"),
    ("input x[3, 0]\n", 1, 12, "got 0 in [3, 0]"),
    ("input x[100000, 100000]\n", 1, 8, "is too large"),
    ("input x[100000, 1], w[1, 100000]\ny = x @ w\n", 2, 7, "entries"),
    ("input x in [1, -1]\n", 1, 13, "lower bound exceeds the upper one"),
    ("input x >= 1e999\n", 1, 12, "the bound inf is not a finite number"),
    ("input x <= -1e999\n", 1, 12, "the bound -inf"),
    ("input x in [0, 1e999]\n", 1, 16, "the bound inf"),
    ("input x in [-1e999, 0]\n", 1, 13, "the bound -inf"),
    # checks and outputs
    ("input x\ny = x^2\n\ncheck convex(y) in x\ncheck convex(y) in z\n", 5, 20, "unknown variable `z`"),
    ("input x\ny = x^2\ncheck convex(q) in x\n", 3, 14, "unknown name `q`"),
    ("input x\ny = x^2\ncheck convex(yy) in x\n", 3, 14, "did you mean `y`"),
    ("input x\ny = x^2\ncheck convex(y) in y\n", 3, 20, "`y` is not an input or param"),
    ("input xx\ny = xx^2\ncheck convex(y) in x\n", 3, 20, "did you mean `xx`"),
    ("input x\ncheck convex(y) in x\ny = x\n", 2, 14, "defined later"),
    ("input x\ny = x\noutput y, w\n", 3, 11, "unknown name `w`"),
    # atoms
    ("input x\natom f(u) = u + x\n", 2, 17, "unknown name `x` in atom `f`"),
    ("atom f(u) = u + v\n", 1, 17, "its body may use only its argument `u`"),
    ("atom f(u) = sum(u)\n", 1, 13, "`sum` is not a scalar function"),
    ("atom f(u) = g(u)\n", 1, 13, "`g` is not defined"),
    ("atom f(u) = f(u) + 1\n", 1, 13, "atom `f` calls itself"),
    ("atom f(u) = u[0]\n", 1, 14, "indexing in atom"),
    ("atom f(u) = u @ u\n", 1, 15, "`@` in atom"),
    ("atom f(u) = relu(u, u)\n", 1, 13, "`relu` takes 1 argument"),
    ("atom f(u) = leaky_relu(u, u)\n", 1, 27, "must be a number"),
    ("atom f(u) = maximum(u)\n", 1, 13, "at least two"),
    ("atom g(u) = u\natom f(u) = g(u, 1)\n", 2, 13, "`g` takes 1 argument"),
    ("atom f(u) = u * 1e999\n", 1, 17, "not a finite number"),
    ("atom f(u) = u^1e999\n", 1, 14, "not a finite number"),
    ("input x\natom x(u) = u\n", 2, 6, "already defined"),
])
def test_semantic_error_positions(text, line, col, words):
    got = error(text)
    assert got[:2] == (line, col), got
    assert words in got[2], got


def test_several_independent_errors_are_all_reported():
    text = ("input x[3]\n"
            "param W[2, 3]\n"
            "a = rleu(x)\n"           # 3:5 unknown function
            "b = W @ W\n"             # 4:7 shape
            "c = x[5]\n"              # 5:6 index out of range
            "d = relu(x)\n"           # fine
            "e = a + d\n"             # a failed: no second report
            "input x\n"               # 8:7 defined twice
            "check convex(d) in q\n")  # 9:20 unknown variable
    assert [(line, col) for line, col, _ in errors(text)] == [(3, 5), (4, 7), (5, 7), (8, 7), (9, 20)]


def test_a_failed_definition_is_reported_once():
    errs = errors("input x[0]\ny = relu(x)\natom f(u) = v\nz = f(1)\noutput y, z\ncheck convex(z) in x\n")
    assert [(line, col) for line, col, _ in errs] == [(1, 9), (3, 13)]


def test_syntax_errors_come_before_the_semantic_pass():
    errs = errors("input x\ny = (x\nz = q\n")
    assert [(line, col) for line, col, _ in errs] == [(2, 7)]


def test_error_format_shows_the_line_and_a_caret():
    with pytest.raises(DcpnetError) as info:
        load_text("input x[3]\n\ty =\tx * 2 + x[9]\n", "m.net")
    text = info.value.format()
    first = text.splitlines()[:3]
    assert first[0] == "m.net:2:16: error: index 9 is out of range for `x` of size 3 (indices count from 0)"
    assert first[1] == "    \ty =\tx * 2 + x[9]"
    assert first[2] == "    \t   \t          ^"
    assert first[2].index("^") == first[1].index("9")


def test_parse_keeps_the_file_name():
    prog = st.parse("input x\n", "a/b.net")
    assert prog.source.file == "a/b.net"


def test_max_entries_is_large_enough_for_real_networks():
    assert MAX_ENTRIES >= 4096 * 4096 * 16
    net = load_text("param W[4096, 4096]\ninput x[4096]\ny = W @ x\n")
    assert net.node("y").shape == (4096,)


def test_load_reports_unreadable_and_non_utf8_files(tmp_path):
    with pytest.raises(DcpnetError) as info:
        load(str(tmp_path / "missing.net"))
    (d,) = info.value.diagnostics
    assert (d.line, d.col) == (1, 1) and "cannot read the file" in d.message
    with pytest.raises(DcpnetError) as info:
        load(str(tmp_path))
    assert info.value.diagnostics[0].line == 1
    p = tmp_path / "latin1.net"
    p.write_bytes("input x\ny = x + \u00e9t\u00e9\n".encode("latin-1"))
    with pytest.raises(DcpnetError) as info:
        load(str(p))
    (d,) = info.value.diagnostics
    assert (d.line, d.col) == (2, 9) and "0xe9" in d.message and d.source_line.startswith("y = x + ")
