"""The grammar and the syntax tree: every statement form of SPEC section 2, precedence, positions, line
endings, and syntax errors with their line:col."""
from __future__ import annotations

import math

import pytest

from dcpnet import syntax as st
from dcpnet.errors import DcpnetError


def stmts(text: str) -> list:
    return st.parse(text).statements


def expr(src: str) -> st.Expr:
    """The expression of `y = SRC` (names need not be declared: this is the parser alone)."""
    (a,) = stmts(f"y = {src}\n")
    return a.expr


def show(e: st.Expr) -> str:
    """A fully parenthesised rendering of a syntax tree, to compare precedence."""
    if isinstance(e, st.Num):
        return f"{e.value:g}"
    if isinstance(e, st.Name):
        return e.id
    if isinstance(e, st.Neg):
        return f"(-{show(e.operand)})"
    if isinstance(e, st.Pow):
        return f"({show(e.base)}^{e.exponent:g})"
    if isinstance(e, st.BinOp):
        return f"({show(e.left)} {e.op} {show(e.right)})"
    if isinstance(e, st.Index):
        return f"{show(e.base)}[{e.index}]"
    return f"{e.func}({', '.join(show(a) for a in e.args)})"


def syntax_errors(text: str) -> list[tuple[int, int, str]]:
    with pytest.raises(DcpnetError) as info:
        st.parse(text, "f.net")
    return [(d.line, d.col, d.message) for d in info.value.diagnostics]


# -- declarations --------------------------------------------------------------------------------------
def test_declarations_several_per_line_with_shapes_and_constraints():
    decls = stmts("input x[4], y in [0, 1], t\nparam W[8, 4] >= 0, b[8] <= -0.5, c in [-2.5, +3]\n")
    assert [(d.kind, d.name, d.shape) for d in decls] == [
        ("input", "x", (4,)), ("input", "y", ()), ("input", "t", ()),
        ("param", "W", (8, 4)), ("param", "b", (8,)), ("param", "c", ())]
    bounds = {d.name: (d.lo, d.hi, d.constraint) for d in decls}
    assert bounds["x"] == (-math.inf, math.inf, "")
    assert bounds["y"] == (0.0, 1.0, "in")
    assert bounds["W"] == (0.0, math.inf, ">=")
    assert bounds["b"] == (-math.inf, -0.5, "<=")
    assert bounds["c"] == (-2.5, 3.0, "in")


def test_declaration_positions():
    x, w = stmts("input x[3, 0]\nparam   W >= -1e-3\n")
    assert x.pos == st.Pos(1, 7) and x.shape_pos == st.Pos(1, 8)
    assert x.size_pos == (st.Pos(1, 9), st.Pos(1, 12))
    assert w.pos == st.Pos(2, 9) and w.constraint_pos == st.Pos(2, 14) and w.lo == -1e-3


def test_between_records_both_bound_positions():
    (d,) = stmts("input s in [ -5 , 7e1 ]\n")
    assert (d.lo, d.hi) == (-5.0, 70.0)
    assert d.constraint_pos == st.Pos(1, 14) and d.hi_pos == st.Pos(1, 19)


def test_keywords_are_names_where_a_name_is_expected():
    decls = stmts("input input, not, in, convex\n")
    assert [d.name for d in decls] == ["input", "not", "in", "convex"]


# -- assignments, atoms, outputs, checks ---------------------------------------------------------------
def test_assignment_atom_output_check():
    a, atom, out, c1, c2, c3 = stmts(
        "z = relu(x)\n"
        "atom sq(t) = t^2\n"
        "output z, w\n"
        "check convex(z) in x, W\n"
        "check not concave(z) in inputs\n"
        "check affine(z) in params\n")
    assert isinstance(a, st.Assign) and a.name == "z" and a.pos == st.Pos(1, 1)
    assert isinstance(atom, st.AtomDef) and (atom.name, atom.arg) == ("sq", "t")
    assert show(atom.body) == "(t^2)"
    assert [n for n, _ in out.names] == ["z", "w"] and out.names[1][1] == st.Pos(3, 11)
    assert (c1.negated, c1.prop, c1.target, [n for n, _ in c1.wrt]) == (False, "convex", "z", ["x", "W"])
    assert c1.target_pos == st.Pos(4, 14) and c1.wrt[1][1] == st.Pos(4, 23)
    assert (c2.negated, c2.prop, [n for n, _ in c2.wrt]) == (True, "concave", ["inputs"])
    assert (c3.prop, c3.pos.line) == ("affine", 6)


# -- expressions ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("src, tree", [
    ("-t^2", "(-(t^2))"),                      # unary minus binds looser than ^
    ("x^2^3", "(x^8)"),                        # right-associative, folded: x^(2^3)
    ("x^3^-1", "(x^0.333333)"),
    ("x**2", "(x^2)"),                         # ** is ^
    ("x ** 2 ** 0.5", "(x^1.41421)"),
    ("x^-1", "(x^-1)"),
    ("x^0.5", "(x^0.5)"),
    ("x^(-2)", "(x^-2)"),
    ("x^-2^2", "(x^-4)"),                      # the sign applies to 2^2, as in -2^2 = -4
    ("x^(-2)^2", "(x^4)"),
    ("x^+1.5e0", "(x^1.5)"),
    ("a - b - c", "((a - b) - c)"),
    ("a / b * c", "((a / b) * c)"),
    ("a + b * c", "(a + (b * c))"),
    ("A @ x + b", "((A @ x) + b)"),
    ("-a * b", "((-a) * b)"),
    ("- -a", "(-(-a))"),
    ("-2 * x", "(-2 * x)"),                    # a signed number is one constant
    ("-(3)", "-3"),
    ("2 - -1", "(2 - -1)"),
    ("f(a, b)[2]^2", "(f(a, b)[2]^2)"),
    ("x[0][1]", "x[0][1]"),
    ("(a + b) * c", "((a + b) * c)"),
    ("relu(W @ x + b)", "relu(((W @ x) + b))"),
    ("g()", "g()"),
    ("1e-3 + .5 + 2. + 0.5E+2", "(((0.001 + 0.5) + 2) + 50)"),
])
def test_precedence(src, tree):
    assert show(expr(src)) == tree


def test_expression_positions_are_the_operator_call_name_and_bracket():
    e = expr("relu(a) +  b[10] @ c^2")
    assert (e.op, e.line, e.col) == ("+", 1, 13)
    assert (e.left.func, e.left.col) == ("relu", 5)
    mm = e.right
    assert (mm.op, mm.col) == ("@", 22)
    assert (mm.left.col, mm.left.index, mm.left.index_col) == (17, 10, 18)
    assert (mm.right.col, mm.right.exponent) == (25, 2.0)


def test_huge_numbers_become_values_the_semantic_pass_reports():
    assert expr("1e999").value == math.inf
    assert expr("x^1e999").exponent == math.inf
    assert expr("x^10^400").exponent == math.inf          # the folded power overflows: no exception
    assert math.isnan(expr("x^(-8)^0.5").exponent)       # a negative base to a fractional power
    assert expr("x[" + "9" * 5000 + "]").index >= 10**100  # no ValueError from int() of 5000 digits
    assert math.isnan(expr("1e-999").value)                # nonzero but rounds to 0: reported, never read as 0
    assert expr("0.0e-999").value == 0.0


def test_nan_and_inf_are_names():
    e = expr("nan + inf")
    assert isinstance(e.left, st.Name) and e.left.id == "nan" and e.right.id == "inf"


# -- layout: comments, blank lines, line endings -------------------------------------------------------
def test_comments_blank_lines_and_missing_final_newline():
    text = "# header\n\n  \ninput x   # a scalar\n\n\n# between\ny = x # trailing\n   # indented comment"
    kinds = [type(s).__name__ for s in stmts(text)]
    assert kinds == ["Decl", "Assign"]
    assert stmts("input x")[0].name == "x"
    assert stmts("") == [] and stmts("\n\n# only a comment") == []


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_line_endings_keep_line_numbers(newline):
    text = newline.join(["# c", "input x", "", "y = relu(x)", "z = y + w"]) + newline
    decl, a, b = stmts(text)
    assert decl.pos == st.Pos(2, 7) and a.pos == st.Pos(4, 1) and b.expr.right.col == 9
    ((line, col, _),) = syntax_errors(text.replace("relu(x)", "relu(x"))
    assert (line, col) == (4, 11)


def test_byte_order_mark_and_tabs_and_form_feed():
    decl, a = stmts("\ufeffinput x\n\ty\t=\tx\f\n")
    assert decl.pos == st.Pos(1, 7) and a.pos == st.Pos(2, 2)


# -- syntax errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, line, col, words", [
    ("input x[1]\ny = relu(x + * 2)\n", 2, 14, "unexpected '*'"),
    ("input x\ny = (x\n", 2, 7, "unexpected end of line"),
    ("input x\ny = x +\n", 2, 8, "end of line"),
    ("y = x^y\n", 1, 7, "exponent of `^` must be a numeric constant"),
    ("input x >= y\n", 1, 12, "a bound must be a number"),
    ("input x[2.5]\n", 1, 10, "unexpected '.5'"),
    ("input x[]\n", 1, 9, "unexpected ']'"),
    ("input x[1, 2, 3]\n", 1, 13, "unexpected ','"),
    ("inpt x\n", 1, 6, "did you mean `input`"),
    ("check convex(y) in\n", 1, 19, "end of line"),
    ("check convex y in x\n", 1, 14, "unexpected 'y'"),
    ("check linear(y) in x\n", 1, 7, "unexpected 'linear'"),
    ("y = x $ 2\n", 1, 7, "unexpected character '$'"),
    ("y = x\x00\n", 1, 6, "'\\x00'"),
    ("y = x^\n", 1, 7, "end of line"),
    ("atom f(a, b) = a\n", 1, 9, "unexpected ','"),
    ("output\n", 1, 7, "end of line"),
    ("y = 1 2\n", 1, 7, "unexpected '2'"),
    ("y = x[-1]\n", 1, 7, "unexpected '-'"),
])
def test_syntax_error_positions(text, line, col, words):
    (err,) = syntax_errors(text)
    assert err[:2] == (line, col), err
    assert words in err[2]


def test_every_bad_line_is_reported():
    errs = syntax_errors("input x\ny = (x\nz = x +\nw = x\nv = 3 3\n")
    assert [(line, col) for line, col, _ in errs] == [(2, 7), (3, 8), (5, 7)]


def test_syntax_errors_are_capped():
    errs = syntax_errors("y = (\n" * 100)
    assert len(errs) == st.MAX_SYNTAX_ERRORS
    assert [line for line, _, _ in errs] == list(range(1, st.MAX_SYNTAX_ERRORS + 1))


def test_deep_nesting_parses_without_recursion():
    depth = 5000
    e = expr("(" * depth + "x" + ")" * depth)
    assert isinstance(e, st.Name)
    e = expr("relu(" * depth + "x" + ")" * depth)
    for _ in range(depth):
        assert isinstance(e, st.Call)
        e = e.args[0]
    assert isinstance(e, st.Name)


def test_grammar_is_found():
    assert "start:" in st.grammar_text()


@pytest.mark.parametrize("name", ["inputx", "params_1", "notx", "convexity", "affine2", "checker", "atoms"])
def test_names_may_start_with_a_keyword(name):
    prog = st.parse(f"{name} = 3\n")
    assert prog.statements[0].name == name
