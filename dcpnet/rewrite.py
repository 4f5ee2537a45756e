"""Rewriting to a normal form before the rules run (issue 17, Method 1).

A subexpression the composition rules leave unknown is read as a term and rewritten, bottom-up to a fixed
point, by equalities that hold wherever the original is defined; an equality that needs a domain condition
(`exp(log(u)) = u` needs u > 0) is used only when the outward-rounded range of u discharges it. The rewritten
term becomes a small network of its own that the ordinary rules (and the Hessian method) analyse, and the
certificate lists every rewrite: from, to, the condition and how it was discharged.

Why term rewriting with a canonical order, not an e-graph (CvxLean's pre-DCP stage): the rules here are few
and oriented (each makes the term more DCP-shaped: fewer products of varying factors, fewer concave-of-convex
nestings), so no saturation is needed to find the good form, and a canonical order settles the commutative
cases (sums are collected into linear combinations with exact rational coefficients, sorted by text; products
sort their factors). That keeps the cost linear in the term and runs only where the rules stopped, whereas an
e-graph would need an extraction cost model and grows with every commuted copy. The price is that a rewrite
blocked by an unlucky orientation is not found; the rules below are chosen so that none undoes another.

>>> from dcpnet.graph import load_text
>>> net = load_text("input a\\ninput b\\nf = (a + b) * (a + b)\\n")
>>> term, log = normal_form(term_of(net, net.names["f"]), Ranges(net))
>>> text(term), [r.rule for r in log]
('square(a + b)', ['u*u = square(u)'])
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from fractions import Fraction

from . import lattice as L
from .atoms import REDUCTIONS, SCALAR_ATOMS, power
from .graph import Network, Node
from .lattice import Interval

MAX_PASSES = 50
ONE = Fraction(1)


@dataclass(frozen=True)
class Term:
    """An expression tree: op and attrs as in graph.Node; `lin` is c0 + Σ cᵢ·argᵢ with attrs (c0, (c1, ...))."""

    op: str
    attrs: tuple
    args: tuple = ()
    shape: tuple = ()
    key: str = field(default="", compare=False, hash=False)


@dataclass(frozen=True)
class Rewrite:
    """One equality used: its name, the subterm before and after, and the condition with how it was met."""

    rule: str
    before: str
    after: str
    condition: str | None = None
    discharged: str | None = None

    def as_json(self) -> dict:
        return {"rule": self.rule, "from": self.before, "to": self.after, "condition": self.condition,
                "discharged": self.discharged}

    def __str__(self) -> str:
        cond = f" [needs {self.condition}: {self.discharged}]" if self.condition else ""
        return f"{self.before} → {self.after} ({self.rule}){cond}"


def mk(op: str, attrs: tuple = (), args: tuple = (), shape: tuple = ()) -> Term:
    t = Term(op, attrs, tuple(args), tuple(shape))
    return replace(t, key=text(t))


def const(v: float | Fraction) -> Term:
    return mk("const", (float(v),))


# -- reading the DAG ---------------------------------------------------------------------------------
def term_of(net: Network, root: int) -> Term:
    """The subexpression at `root` as a term (sums and scalings already as linear combinations)."""
    memo: dict[int, Term] = {}
    for i in net.ancestors(root):
        node = net.nodes[i]
        args = tuple(memo[a] for a in node.args)
        memo[i] = _from_node(node, args)
    return memo[root]


def _from_node(node: Node, args: tuple) -> Term:
    op = node.op
    if op == "var":
        return mk("var", node.attrs, (), node.shape)
    if op == "const":
        return mk("const", node.attrs)
    if op == "add":
        return _lin(Fraction(0), [(ONE, args[0]), (ONE, args[1])], node.shape)
    if op == "sub":
        return _lin(Fraction(0), [(ONE, args[0]), (-ONE, args[1])], node.shape)
    if op == "neg":
        return _lin(Fraction(0), [(-ONE, args[0])], node.shape)
    return mk(op, node.attrs, args, node.shape)


def _lin(c0: Fraction, terms: list, shape: tuple) -> Term:
    """c0 + Σ c·t, flattened, like terms collected, sorted by text; a bare term when that is all there is."""
    coeffs: dict[Term, Fraction] = {}
    for c, t in terms:
        for cc, tt in _expand(c, t):
            if tt is None:
                c0 += cc
            else:
                coeffs[tt] = coeffs.get(tt, Fraction(0)) + cc
    items = sorted(((t, c) for t, c in coeffs.items() if c != 0), key=lambda tc: tc[0].key)
    if not items and (c0 == 0 or not shape):
        # a constant is a literal only when one reads back exactly as c0 (1/3 stays a combination)
        return const(c0) if not shape and _writable(c0) else mk("lin", (c0, ()), (), shape)
    if c0 == 0 and len(items) == 1 and items[0][1] == 1:
        return items[0][0]
    return mk("lin", (c0, tuple(c for _, c in items)), tuple(t for t, _ in items), shape)


def _expand(c: Fraction, t: Term):
    """c·t as (coefficient, term) pairs: a nested combination is flattened, a constant becomes c0 (None)."""
    if t.op == "const":
        yield c * literal(t), None
    elif t.op == "lin":
        yield c * t.attrs[0], None
        for ci, ti in zip(t.attrs[1], t.args):
            yield c * ci, ti
    elif t.op == "mul" and t.args[0].op == "const" and t.args[1].shape == t.shape:
        yield from _expand(c * literal(t.args[0]), t.args[1])
    elif t.op == "mul" and t.args[1].op == "const" and t.args[0].shape == t.shape:
        yield from _expand(c * literal(t.args[1]), t.args[0])
    elif t.op == "div" and t.args[1].op == "const" and literal(t.args[1]) != 0 and t.args[0].shape == t.shape:
        yield from _expand(c / literal(t.args[1]), t.args[0])   # exact: coefficients are rationals
    else:
        yield c, t


def literal(t: Term) -> Fraction:
    """A constant's value as precise.py reads it: the decimal written (0.1 is one tenth), kept exactly on a
    literal's node (attrs (double, Fraction)); a constant made here reads as the decimal of its double."""
    if len(t.attrs) > 1 and t.attrs[1] is not None:
        return t.attrs[1]
    return Fraction(repr(t.attrs[0]))


def _writable(c: Fraction) -> bool:
    """Is c a literal the language can write, read back exactly as c?"""
    return Fraction(repr(float(c))) == c


def lin_items(t: Term) -> tuple[Fraction, list]:
    """(c0, [(c, term)]) of any term."""
    if t.op == "lin":
        return t.attrs[0], list(zip(t.attrs[1], t.args))
    if t.op == "const":
        return literal(t), []
    return Fraction(0), [(ONE, t)]


# -- ranges of terms (outward rounded, as the analysis) ------------------------------------------------
class Ranges:
    """Sound ranges of terms over the network's declared constraints, the same interval arithmetic as prove."""

    def __init__(self, net: Network):
        self.net = net
        self.memo: dict[Term, Interval] = {}

    def __call__(self, t: Term) -> Interval:
        if t not in self.memo:
            self.memo[t] = self._range(t, [self(a) for a in t.args])
        return self.memo[t]

    def _range(self, t: Term, r: list[Interval]) -> Interval:
        op = t.op
        if op == "var":
            return self.net.variables[t.attrs[0]].bounds
        if op == "const":
            return L.enclose(literal(t))   # outward: 0.30000000000000000001 is not the double 0.3
        if op == "lin":
            out = _coeff_interval(t.attrs[0])
            for c, x in zip(t.attrs[1], r):
                out = L.add(out, L.mul(_coeff_interval(c), x))
            return out
        if op in ("mul", "div"):
            return (L.mul if op == "mul" else L.div)(r[0], r[1])
        if op == "matmul":
            return L.scale(L.mul(r[0], r[1]), t.args[1].shape[0])
        if op in ("index", "slice"):
            return r[0]
        if op == "scalar":
            return self.net.scalar_atom(t.attrs).image(r[0])
        if op == "concat":
            out = r[0]
            for x in r[1:]:
                out = out.hull(x)
            return out
        return REDUCTIONS[t.attrs[0]].image(r, [math.prod(a.shape) for a in t.args])


def _coeff_interval(c: Fraction) -> Interval:
    f = float(c)
    return L.point(f) if Fraction(f) == c else Interval(math.nextafter(f, -L.INF), math.nextafter(f, L.INF))


# -- the rules ---------------------------------------------------------------------------------------
def _scalar(name: str, u: Term) -> Term:
    return mk("scalar", (name,), (u,), u.shape)


def _is(t: Term, name: str) -> bool:
    return t.op == "scalar" and t.attrs == (name,)


def _is_square(t: Term) -> bool:
    return _is(t, "square")


def _rule_scalar(t: Term, ranges: Ranges):
    """Rules at an elementwise atom: (new term, Rewrite) or None."""
    u = t.args[0]
    name = t.attrs[0]
    if t.attrs == ("power", 2.0):
        return _scalar("square", u), "u^2 = square(u)", None
    if name == "log" and _is(u, "exp"):
        return u.args[0], "log(exp(u)) = u", None
    if name == "exp" and _is(u, "log"):
        r = ranges(u.args[0])
        if r.lo > 0:
            return u.args[0], "exp(log(u)) = u where u > 0", ("u > 0", r)
        return None
    if name == "sqrt" and _is_square(u):
        return _scalar("abs", u.args[0]), "sqrt(square(u)) = abs(u)", None
    if name == "square" and _is(u, "sqrt"):
        r = ranges(u.args[0])
        if r.lo >= 0:
            return u.args[0], "square(sqrt(u)) = u where u ≥ 0", ("u ≥ 0", r)
        return None
    if name == "log":
        return _log_of(u, ranges) or _log_of_sum(u)
    if name == "sqrt":
        return _power_of_exp(u, 0.5) or _sqrt_of_squares(u)
    if name == "exp":
        return _exp_of_scaled_log(u, ranges)
    if key_is_power(t):
        return _power_of_exp(u, t.attrs[1])
    return None


def key_is_power(t: Term) -> bool:
    return t.op == "scalar" and t.attrs[0] == "power"


def _power_of_exp(u: Term, p: float):
    if not _is(u, "exp"):
        return None
    return _scalar("exp", _lin(Fraction(0), [(literal(const(p)), u.args[0])], u.shape)), "exp(u)^p = exp(p*u)", None


def _exp_of_scaled_log(u: Term, ranges: Ranges):
    c0, items = lin_items(u)
    if c0 != 0 or len(items) != 1 or not _is(items[0][1], "log") or not _writable(items[0][0]):
        return None
    c, lg = items[0]
    base = lg.args[0]
    r = ranges(base)
    if not r.lo > 0:
        return None
    out = _scalar("square", base) if c == 2 else mk("scalar", ("power", float(c)), (base,), base.shape)
    return out, "exp(c*log(u)) = u^c where u > 0", ("u > 0", r)


def _log_of(u: Term, ranges: Ranges):
    """log of a product, quotient, power, reciprocal or sigmoid: sums of logs (each factor's sign discharged)."""
    if _is(u, "sigmoid"):
        return _lin(Fraction(0), [(-ONE, _scalar("softplus", _negated(u.args[0])))], u.shape), \
            "log(sigmoid(u)) = -softplus(-u)", None
    c0, items = lin_items(u)
    if c0 == 1 and len(items) == 1 and items[0][0] == -1 and _is(items[0][1], "sigmoid"):
        return _lin(Fraction(0), [(-ONE, _scalar("softplus", items[0][1].args[0]))], u.shape), \
            "log(1 - sigmoid(u)) = -softplus(u)", None
    if _is(u, "inv_pos"):
        return _lin(Fraction(0), [(-ONE, _scalar("log", u.args[0]))], u.shape), "log(inv_pos(u)) = -log(u)", None
    if (_is_square(u) or key_is_power(u)) and not u.shape:
        p = 2.0 if _is_square(u) else u.attrs[1]
        r = ranges(u.args[0])
        if r.lo > 0:
            return _lin(Fraction(0), [(literal(const(p)), _scalar("log", u.args[0]))], ()), \
                "log(u^p) = p*log(u) where u > 0", ("u > 0", r)
    if u.op in ("mul", "div") and not u.shape and not u.args[0].shape and not u.args[1].shape:
        ra, rb = ranges(u.args[0]), ranges(u.args[1])
        if ra.lo > 0 and rb.lo > 0:
            sign = ONE if u.op == "mul" else -ONE
            out = _lin(Fraction(0), [(ONE, _scalar("log", u.args[0])), (sign, _scalar("log", u.args[1]))], ())
            words = "log(a*b) = log(a) + log(b)" if u.op == "mul" else "log(a/b) = log(a) - log(b)"
            return out, words + " where a, b > 0", ("a > 0 and b > 0", ra if ra.lo <= rb.lo else rb)
    return None


def _negated(u: Term) -> Term:
    return _lin(Fraction(0), [(-ONE, u)], u.shape)


def _log_of_sum(u: Term):
    if u.op == "reduce" and u.attrs == ("sum",) and _is(u.args[0], "exp"):
        return mk("reduce", ("log_sum_exp",), (u.args[0].args[0],)), "log(sum(exp(u))) = log_sum_exp(u)", None
    c0, items = lin_items(u)
    common = items[0][0] if items else ONE
    if common > 0 and common != 1 and all(c == common for c, _ in items) and c0 in (0, common) \
            and _writable(common) and not u.shape and all(_is(x, "exp") for _, x in items):
        rest = _lin(c0 / common, [(ONE, x) for _, x in items], ())
        out = _lin(Fraction(0), [(ONE, _scalar("log", const(common))), (ONE, _scalar("log", rest))], ())
        return out, "log(c*S) = log(c) + log(S) for a constant c > 0", None
    if not items or any(c != 1 or not _is(x, "exp") or x.shape for c, x in items) or c0 not in (0, 1) or u.shape:
        return None
    exps = [x.args[0] for _, x in items]
    if c0 == 0 and len(exps) == 1:
        return None
    if c0 == 1 and len(exps) == 1:
        return _scalar("softplus", exps[0]), "log(1 + exp(u)) = softplus(u)", None
    entries = exps + ([const(0.0)] if c0 == 1 else [])
    vec = mk("concat", (), tuple(entries), (len(entries),))
    return mk("reduce", ("log_sum_exp",), (vec,)), "log(exp(a) + exp(b) + …) = log_sum_exp(concat(a, b, …))", None


def _sqrt_of_squares(u: Term):
    if u.op == "reduce" and u.attrs == ("sum_squares",):
        return mk("reduce", ("norm2",), u.args), "sqrt(sum_squares(u)) = norm2(u)", None
    if u.op == "reduce" and u.attrs == ("sum",) and _is_square(u.args[0]):
        return mk("reduce", ("norm2",), u.args[0].args), "sqrt(sum(square(u))) = norm2(u)", None
    c0, items = lin_items(u)
    if u.shape or len(items) + (c0 != 0) < 2 or c0 < 0 or any(c <= 0 or not _writable(c) or not _is_square(x)
                                                              for c, x in items):
        return None
    entries = [x.args[0] if c == 1 else mk("mul", (), (_scalar("sqrt", const(c)), x.args[0])) for c, x in items]
    if c0 != 0:
        entries.append(_scalar("sqrt", const(c0)) if _writable(c0) else None)
    if None in entries or any(e.shape for e in entries):
        return None
    vec = mk("concat", (), tuple(entries), (len(entries),))
    return mk("reduce", ("norm2",), (vec,)), "sqrt(a² + b² + … + c) = norm2(concat(a, b, …, √c))", None


def _rule_mul(t: Term, ranges: Ranges):
    a, b = t.args
    if t.shape != a.shape or t.shape != b.shape:
        return None
    for f, other in ((a, b), (b, a)):
        c0, items = lin_items(f)
        if f.op == "lin" and c0 == 0 and len(items) == 1:   # a scaled factor: the scale moves out front
            c, u = items[0]
            return _lin(Fraction(0), [(c, _sorted_mul(u, other, t.shape))], t.shape), "(c*u)*v = c*(u*v)", None
    if a == b:
        return _scalar("square", a), "u*u = square(u)", None
    if _is(a, "exp") and _is(b, "exp"):
        s = _lin(Fraction(0), [(ONE, a.args[0]), (ONE, b.args[0])], t.shape)
        return _scalar("exp", s), "exp(a)*exp(b) = exp(a + b)", None
    for sq, inv in ((a, b), (b, a)):
        if _is_square(sq) and _is(inv, "inv_pos") and not t.shape:
            return mk("reduce", ("quad_over_lin",), (sq.args[0], inv.args[0])), \
                "square(u)*inv_pos(v) = quad_over_lin(u, v)", None
    for p, lg in ((a, b), (b, a)):
        found = _times_log(p, lg)
        if found is not None:
            return found
    return None


def _times_log(p: Term, lg: Term):
    """p·log(q) with q - p a constant c: q·log(q) - c·log(q) = -entr(q) - c·log(q), where q > 0 (as written)."""
    if not _is(lg, "log"):
        return None
    q = lg.args[0]
    c0q, iq = lin_items(q)
    c0p, ip = lin_items(p)
    if sorted((x.key, c) for c, x in iq) != sorted((x.key, c) for c, x in ip):
        return None
    c = c0q - c0p
    if not _writable(c):
        return None
    out = _lin(Fraction(0), [(-ONE, _scalar("entr", q)), (-c, lg)], q.shape)
    return out, "u*log(u + c) = -entr(u + c) - c*log(u + c)", None


def _rule_div(t: Term, ranges: Ranges):
    a, b = t.args
    if b.op == "const" or b.shape:
        return None
    r = ranges(b)
    squares = a.args[0] if _is_square(a) and not a.shape else \
        a.args[0].args[0] if a.op == "reduce" and a.attrs == ("sum",) and _is_square(a.args[0]) else \
        a.args[0] if a.op == "reduce" and a.attrs == ("sum_squares",) else None
    if squares is not None and r.lo > 0:
        return mk("reduce", ("quad_over_lin",), (squares, b)), "sum(square(u))/v = quad_over_lin(u, v) where v > 0", \
            ("v > 0", r)
    if _is(a, "exp") and _is(b, "exp") and a.shape == b.shape:
        return _scalar("exp", _lin(Fraction(0), [(ONE, a.args[0]), (-ONE, b.args[0])], a.shape)), \
            "exp(a)/exp(b) = exp(a - b)", None
    if a.shape == t.shape and (r.lo > 0 or r.hi < 0):
        if r.lo > 0:
            return _sorted_mul(a, _scalar("inv_pos", b), t.shape), "u/v = u*inv_pos(v) where v > 0", ("v > 0", r)
        out = _lin(Fraction(0), [(-ONE, _sorted_mul(a, _scalar("inv_pos", _negated(b)), t.shape))], t.shape)
        return out, "u/v = -u*inv_pos(-v) where v < 0", ("v < 0", r)
    return None


def _rule_lin(t: Term, ranges: Ranges):
    """Inside a sum: relu(u) - relu(-u) = u, maximum(a, b) + minimum(a, b) = a + b, expanded squares."""
    c0, items = lin_items(t)
    coeff = {x: c for c, x in items}
    for x, c in coeff.items():
        if _is(x, "relu") or _is(x, "softplus"):
            u, name = x.args[0], x.attrs[0]
            minus = _scalar(name, _lin(Fraction(0), [(-ONE, u)], u.shape))
            if coeff.get(minus) == -c:
                rest = [(cc, xx) for xx, cc in coeff.items() if xx not in (x, minus)] + [(c, u)]
                return _lin(c0, rest, t.shape), f"{name}(u) - {name}(-u) = u", None
        if x.op == "reduce" and x.attrs == ("maximum",) and len(x.args) == 2:
            other = mk("reduce", ("minimum",), x.args, x.shape)
            other_swapped = mk("reduce", ("minimum",), x.args[::-1], x.shape)
            for m in (other, other_swapped):
                if coeff.get(m) == c and x.args[0].shape == x.shape and x.args[1].shape == x.shape:
                    rest = [(cc, xx) for xx, cc in coeff.items() if xx not in (x, m)] + [(c, x.args[0]), (c, x.args[1])]
                    return _lin(c0, rest, t.shape), "maximum(a, b) + minimum(a, b) = a + b", None
    return _expanded_square(c0, coeff, t.shape)


def _expanded_square(c0, coeff: dict, shape: tuple):
    squares = [(x.args[0], c) for x, c in coeff.items() if _is_square(x) and c > 0]
    for i, (a, ca) in enumerate(squares):
        for b, cb in squares[i + 1:]:
            if ca != cb:
                continue
            for sign in (1, -1):
                prod = coeff.get(_sorted_mul(a, b, shape))
                if prod is not None and prod == 2 * sign * ca:
                    inner = _lin(Fraction(0), [(ONE, a), (Fraction(sign), b)], shape)
                    drop = {_scalar("square", a), _scalar("square", b), _sorted_mul(a, b, shape)}
                    rest = [(cc, xx) for xx, cc in coeff.items() if xx not in drop] + [(ca, _scalar("square", inner))]
                    return _lin(c0, rest, shape), "a² ± 2ab + b² = square(a ± b)", None
    return None


def _sorted_mul(a: Term, b: Term, shape: tuple) -> Term:
    x, y = sorted((a, b), key=lambda t: t.key)
    return mk("mul", (), (x, y), shape)


def _canonical(t: Term) -> Term:
    """Commutative products sort their factors (so a*b and b*a are one term)."""
    if t.op == "mul" and t.args[0].shape == t.args[1].shape and t.args[1].key < t.args[0].key:
        return mk("mul", (), t.args[::-1], t.shape)
    if t.op == "mul" and (t.args[0].op == "const" or t.args[1].op == "const") \
            and t.args[0].shape == t.shape and t.args[1].shape == t.shape:
        return _lin(Fraction(0), [(ONE, t)], t.shape)
    if t.op == "div" and t.args[1].op == "const" and literal(t.args[1]) != 0 and t.args[0].shape == t.shape:
        return _lin(Fraction(0), [(ONE, t)], t.shape)
    return t


RULES = {"scalar": _rule_scalar, "mul": _rule_mul, "div": _rule_div, "lin": _rule_lin}


def normal_form(t: Term, ranges: Ranges) -> tuple[Term, list[Rewrite]]:
    """Rewrite bottom-up to a fixed point; the log holds every equality used, in order."""
    log: list[Rewrite] = []
    memo: dict[Term, Term] = {}

    def norm(t: Term) -> Term:
        if t in memo:
            return memo[t]
        args = tuple(norm(a) for a in t.args)
        cur = t if args == t.args else _rebuild(t, args)
        cur = _canonical(cur)
        for _ in range(MAX_PASSES):
            rule = RULES.get(cur.op)
            found = rule(cur, ranges) if rule else None
            if found is None:
                break
            new, name, cond = found
            log.append(Rewrite(name, text(cur), text(new), *(_discharge(cond) if cond else (None, None))))
            cur = norm(new)
        memo[t] = cur
        return cur

    return norm(t), log


def _rebuild(t: Term, args: tuple) -> Term:
    if t.op == "lin":
        return _lin(t.attrs[0], list(zip(t.attrs[1], args)), t.shape)
    return mk(t.op, t.attrs, args, t.shape)


def _discharge(cond: tuple) -> tuple[str, str]:
    what, r = cond
    return what, f"its range {r} (outward-rounded interval analysis) satisfies it"


# -- text --------------------------------------------------------------------------------------------
def _num(c) -> str:
    f = float(c)
    if _writable(Fraction(c)):
        return f"{f:g}" if float(f"{f:g}") == f else repr(f)
    return f"({Fraction(c).numerator}/{Fraction(c).denominator})"


def text(t: Term) -> str:
    return _text(t)[0]


def _wrap(t: Term, outer: int) -> str:
    s, p = _text(t)
    return f"({s})" if p < outer else s


def _text(t: Term) -> tuple[str, int]:
    """(text, precedence) as graph.py writes expressions."""
    op = t.op
    if op == "var":
        return t.attrs[0], 9
    if op == "const":
        v = t.attrs[0]
        return _num(v), 9 if v >= 0 else 3
    if op == "lin":
        return _lin_text(t), 1
    if op in ("mul", "div", "matmul"):
        sym = {"mul": "*", "div": "/", "matmul": "@"}[op]
        return f"{_wrap(t.args[0], 2)} {sym} {_wrap(t.args[1], 3)}", 2
    if op == "index":
        return f"{_wrap(t.args[0], 5)}[{t.attrs[0]}]", 9
    if op == "slice":
        return f"{_wrap(t.args[0], 5)}[{t.attrs[0]}:{t.attrs[1]}]", 9
    if op == "concat":
        return "concat(" + ", ".join(_wrap(a, 0) for a in t.args) + ")", 9
    if op == "scalar":
        key = t.attrs
        if key[0] == "power":
            return f"{_wrap(t.args[0], 5)}^{key[1]:g}", 4
        name = key[1] if key[0] == "user" else key[0]
        extra = f", {key[1]:g}" if key[0] == "leaky_relu" else ""
        return f"{name}({_wrap(t.args[0], 0)}{extra})", 9
    return f"{t.attrs[0]}({', '.join(_wrap(a, 0) for a in t.args)})", 9


def _lin_text(t: Term) -> str:
    c0, items = lin_items(t)
    parts: list[tuple[Fraction, str]] = []
    for c, x in sorted(items, key=lambda cx: cx[0] < 0):
        body = _wrap(x, 3)
        parts.append((c, body if abs(c) == 1 else f"{_num(abs(c))}*{body}"))
    if c0 != 0:
        parts.append((c0, _num(abs(c0))))
    out = ""
    for i, (c, s) in enumerate(parts):
        out += (("-" if c < 0 else "") + s) if i == 0 else (" - " if c < 0 else " + ") + s
    return out or "0"


# -- building the rewritten network --------------------------------------------------------------------
class _NetBuilder:
    def __init__(self, net: Network):
        self.net = Network(net.source, atom_defs=net.atom_defs)
        self.index: dict[tuple, int] = {}
        for v in net.variables.values():
            node = self._node("var", (), v.shape, (v.name,), v.name)
            node.names.append(v.name)
            self.net.variables[v.name] = replace(v, node=node.id)
            self.net.names[v.name] = node.id

    def _node(self, op, args, shape, attrs, text_, precedence=9) -> Node:
        key = (op, tuple(args), attrs)
        if key in self.index:
            return self.net.nodes[self.index[key]]
        node = Node(len(self.net.nodes), op, tuple(args), tuple(shape), attrs, text_, precedence=precedence)
        self.net.nodes.append(node)
        self.index[key] = node.id
        return node

    def build(self, t: Term) -> int:
        if t.op == "var":
            return self.net.names[t.attrs[0]]
        if t.op == "lin":
            return self._lin(t)
        args = [self.build(a) for a in t.args]
        s, p = _text(t)
        return self._node(t.op, args, t.shape, t.attrs, s, p).id

    def _const(self, c) -> int:
        f = float(c)
        if _writable(Fraction(c)):
            return self._node("const", (), (), (f,), _num(f)).id
        num, den = float(Fraction(c).numerator), float(Fraction(c).denominator)
        if not (_writable(Fraction(Fraction(c).numerator)) and _writable(Fraction(Fraction(c).denominator))):
            raise ValueError("coefficient not representable")
        a, b = self._node("const", (), (), (num,), _num(num)).id, self._node("const", (), (), (den,), _num(den)).id
        return self._node("div", (a, b), (), (), f"{_num(num)} / {_num(den)}", 2).id

    def _lin(self, t: Term) -> int:
        c0, items = lin_items(t)
        out, out_text = None, ""
        for c, x in sorted(items, key=lambda cx: cx[0] < 0):
            xid = self.build(x)
            mag = abs(c)
            if mag != 1:
                xid = self._node("mul", (self._const(mag), xid), x.shape, (), f"{_num(mag)}*{_wrap(x, 3)}", 2).id
            if out is None:
                out = xid if c > 0 else self._node("neg", (xid,), x.shape, (), f"-{_wrap(x, 3)}", 3).id
            else:
                op = "add" if c > 0 else "sub"
                out = self._node(op, (out, xid), t.shape, (), f"{out_text} {'+' if c > 0 else '-'} {_wrap(x, 2)}", 1).id
            out_text = self.net.nodes[out].text
        if out is None and t.shape:
            raise ValueError("a constant vector: the language has no literal for it")
        if c0 != 0 or out is None:
            k = self._const(abs(c0))
            if out is None:
                return k if c0 >= 0 else self._node("neg", (k,), (), (), f"-{_num(abs(c0))}", 3).id
            op = "add" if c0 > 0 else "sub"
            out = self._node(op, (out, k), t.shape, (), f"{out_text} {'+' if c0 > 0 else '-'} {_num(abs(c0))}", 1).id
        return out


def rewritten_network(net: Network, t: Term, name: str) -> tuple[Network, int]:
    b = _NetBuilder(net)
    root = b.build(t)
    b.net.nodes[root].names.insert(0, name)
    return b.net, root


def _plain(s: str) -> str:
    return s.replace(" ", "").replace("(", "").replace(")", "")


def prove_by_rewriting(an, root: int, wrt: frozenset):
    """The hook the prover calls at a lowest unknown node: a Step when the rewritten form is proved."""
    from .certificate import certificate
    from .prove import Analyzer, Step

    net = an.net
    if any(net.nodes[i].op == "scalar" and net.nodes[i].attrs[0] == "user" for i in net.ancestors(root)):
        return None
    term, log = normal_form(term_of(net, root), Ranges(net))
    if not log and _plain(text(term)) == _plain(net.nodes[root].text):
        return None
    if not log:   # reading sums as linear combinations already collected like terms
        log = [Rewrite("collecting like terms (exact rational coefficients)", net.nodes[root].text, text(term))]
    try:
        new_net, new_root = rewritten_network(net, term, net.nodes[root].label)
    except ValueError:
        return None
    sub = Analyzer(new_net, beyond=("product", "hessian"))
    curv = sub.steps(wrt)[new_root].curvature
    if curv.value == "unknown":
        return None
    cert = certificate(sub, new_root, wrt)
    detail = {"method": "rewrite", "to": text(term), "rewrites": [r.as_json() for r in log], "certificate": cert}
    return Step(curv, "rewritten to `{}` (equal wherever the original is defined): {}",
                (text(term), "; ".join(str(r) for r in log)), detail=detail)


__all__ = ["SCALAR_ATOMS", "Rewrite", "Term", "normal_form", "power", "prove_by_rewriting", "term_of", "text"]
