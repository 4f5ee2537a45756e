"""A user atom's body read exactly as written: in mpmath, in NumPy (value and slope), and in intervals.

sympy simplifies (`sqrt(t)^6` becomes `t^3`, dropping t ≥ 0); these readers never do. Each one walks the
same small postorder program compiled from the syntax tree, and every built-in call is the atom table's own
row: its `mp` form and domain, its NumPy `f` and `df`, its outward-rounded `image`. So

- the mpmath reader raises `Undefined` wherever any subexpression leaves its built-in's domain (a witness
  there is no point of the function), and reads each literal as the exact decimal written;
- the interval reader is a sound enclosure of the body on a box (outward rounding; a box where some
  subexpression is undefined may get any bound, since no point of the atom lies there).

>>> from dcpnet.graph import load_text
>>> import mpmath
>>> net = load_text("input x\\natom f(t) = sqrt(t)^6\\ny = f(x)\\n")
>>> body = Body.of(net.atom_defs, "f")
>>> enclosure = body.interval(Interval(1.0, 4.0))   # the table's images, widened by each row's error
>>> body.mp(mpmath.mpf(4)), enclosure.lo <= 1 < 64 <= enclosure.hi < 64.001
(mpf('64.0'), True)
>>> body.mp(mpmath.mpf(-1))
Traceback (most recent call last):
...
dcpnet.body.Undefined: sqrt of -1.0 is outside its domain
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from . import lattice as L
from . import syntax as st
from .atoms import PARAMETRIC_ATOMS, SCALAR_ATOMS, ScalarAtom, power
from .lattice import INF, REALS, Interval

MAX_OPS = 20_000      # a body (its called atoms counted once each) larger than this is not compiled
SUBDIVISIONS = 16     # pieces of a finite region in `enclosure`


class Undefined(ValueError):
    """The body is not defined (as a finite real) at this point."""


class TooLarge(ValueError):
    """The body is too large to compile."""


# A program is a tuple of steps in postorder; each step is (kind, payload):
#   ("arg", None) ("num", (float, Fraction)) ("neg", None) ("bin", "+-*/") ("atom", ScalarAtom)
#   ("max", n) ("min", n) ("call", Program)
Program = tuple


@dataclass(frozen=True, repr=False)
class Body:
    """One atom body compiled to a program, with its three readers."""

    name: str
    program: Program

    def __repr__(self) -> str:
        return f"Body({self.name!r}, {len(self.program)} steps)"

    @staticmethod
    def of(defs: dict, name: str) -> Body:
        return Body(name, _compile(defs, name, {}))

    @staticmethod
    def of_constant(defs: dict, expr: st.Expr) -> Body:
        """A subexpression of a body that uses no argument (its value is `mp` at any point)."""
        return Body("constant", _compile({"constant": st.AtomDef("constant", "", expr, st.Pos(0, 0)), **defs},
                                         "constant", {}))

    def mp(self, x):
        """The value at the mpf x, at the working precision; Undefined outside the body's domain."""
        try:
            return _run(self.program, x, _MP)
        except RecursionError:
            raise Undefined("nested too deeply to evaluate") from None

    def numpy(self, u) -> tuple[np.ndarray, np.ndarray]:
        """(value, slope) elementwise by forward differentiation; nan where undefined."""
        u = np.asarray(u, dtype=float)
        try:
            with np.errstate(all="ignore"):
                v, d = _run(self.program, (u, np.ones_like(u)), _NP)
        except RecursionError:
            v = d = np.full_like(u, np.nan)
        v, d = np.asarray(v, dtype=float) + np.zeros_like(u), np.asarray(d, dtype=float) + np.zeros_like(u)
        return v, d

    def interval(self, box: Interval) -> Interval:
        """A sound enclosure of the body over box (outward rounding); REALS when nothing better is known."""
        try:
            return _run(self.program, box, _IV)
        except (RecursionError, ValueError, OverflowError, ZeroDivisionError):
            return REALS

    def defined_nowhere(self) -> bool:
        """True when interval evaluation proves that no real point is in the body's domain: on every piece
        of a subdivision of the line some built-in's argument misses its domain (sqrt(-1 - t^2)).

        >>> from dcpnet.graph import load_text
        >>> net = load_text("input x\\natom f(t) = sqrt(-1 - t^2) + t\\natom g(t) = sqrt(t)\\ny = f(x) + g(x)\\n")
        >>> Body.of(net.atom_defs, "f").defined_nowhere(), Body.of(net.atom_defs, "g").defined_nowhere()
        (True, False)
        """
        try:
            return all(_run(self.program, piece, _NOWHERE) is None for piece in _subdivide(REALS))
        except (RecursionError, ValueError, OverflowError, ZeroDivisionError):
            return False

    def enclosure(self, box: Interval) -> Interval:
        """`interval` on a subdivision of box, hulled: tighter where the body repeats its argument."""
        parts = _subdivide(box)
        out = [self.interval(p) for p in parts]
        return Interval(min(p.lo for p in out), max(p.hi for p in out))


def _subdivide(box: Interval) -> list[Interval]:
    lo, hi = box.lo, box.hi
    if lo == hi:
        return [box]
    if math.isinf(lo) and math.isinf(hi):
        return [Interval(-INF, -1e6), *_subdivide(Interval(-1e6, 1e6)), Interval(1e6, INF)]
    if math.isinf(hi):   # [lo, lo + 1], then widths growing 16-fold, then the tail
        ends = [lo + w for w in (0.0, 1.0, 16.0, 256.0, 4096.0, 65536.0)] + [INF]
        return [Interval(a, b) for a, b in itertools.pairwise(ends) if a < b or b == INF]
    if math.isinf(lo):
        return [Interval(-p.hi, -p.lo) for p in reversed(_subdivide(Interval(-hi, INF)))]
    cuts = [lo + (hi - lo) * k / SUBDIVISIONS for k in range(1, SUBDIVISIONS)]
    ends = [lo, *sorted(c for c in cuts if lo < c < hi), hi]
    return [Interval(a, b) for a, b in itertools.pairwise(ends)]


# -- compiling -----------------------------------------------------------------------------------------
def _compile(defs: dict, name: str, done: dict) -> Program:
    """The postorder program of atom `name`; each called atom is compiled once (`done`)."""
    if name in done:
        return done[name]
    d = defs[name]
    steps: list = []   # `done` keeps each callee's program, so a called atom is compiled once
    stack: list = [(d.body, False)]
    while stack:
        e, expanded = stack.pop()
        kids = _kids(e)
        if kids and not expanded:
            stack.append((e, True))
            stack.extend((k, False) for k in reversed(kids))
            continue
        steps.append(_step(defs, d, e, done))
        if len(steps) > MAX_OPS:
            raise TooLarge(f"atom `{name}` has more than {MAX_OPS} operations")
    done[name] = tuple(steps)
    return done[name]


def _kids(e) -> list:
    if isinstance(e, st.Neg):
        return [e.operand]
    if isinstance(e, st.BinOp):
        return [e.left, e.right]
    if isinstance(e, st.Pow):
        return [e.base]
    if isinstance(e, st.Call):
        return list(e.args[:1]) if e.func in PARAMETRIC_ATOMS else list(e.args)
    return []


def _step(defs: dict, d, e, done: dict) -> tuple:
    if isinstance(e, st.Num):
        return ("num", (e.value, e.exact if e.exact is not None else Fraction(e.value)))
    if isinstance(e, st.Name):
        return ("arg", None)
    if isinstance(e, st.Neg):
        return ("neg", None)
    if isinstance(e, st.BinOp):
        return ("bin", e.op)
    if isinstance(e, st.Pow):
        return ("atom", power(e.exponent))
    f = e.func
    if f in SCALAR_ATOMS:
        return ("atom", SCALAR_ATOMS[f])
    if f in PARAMETRIC_ATOMS:
        return ("atom", PARAMETRIC_ATOMS[f](e.args[1].value))
    if f in ("maximum", "minimum"):
        return (f[:3], len(e.args))
    return ("call", _compile(defs, f, done))


# -- running -------------------------------------------------------------------------------------------
def _run(program: Program, x, ops: dict):
    stack: list = []
    for kind, payload in program:
        if kind == "arg":
            stack.append(x)
        elif kind == "num":
            stack.append(ops["num"](payload))
        elif kind == "neg":
            stack.append(ops["neg"](stack.pop()))
        elif kind == "bin":
            b = stack.pop()
            stack.append(ops[payload](stack.pop(), b))
        elif kind == "atom":
            stack.append(ops["atom"](payload, stack.pop()))
        elif kind in ("max", "min"):
            args = stack[len(stack) - payload:]
            del stack[len(stack) - payload:]
            stack.append(ops[kind](args))
        else:
            stack.append(_run(payload, stack.pop(), ops))
    return stack[0]


# mpmath: exact literals, every built-in's domain, finite reals only
def _mp():
    import mpmath

    return mpmath


def _mp_num(payload):
    m = _mp()
    q = payload[1]
    return m.mpf(m.libmp.from_rational(q.numerator, q.denominator, m.mp.prec, "n"))


def _mp_finite(v):
    m = _mp()
    if not isinstance(v, m.mpf) or not m.isfinite(v):
        raise Undefined(f"the value {v} is not a finite real number")
    return v


def _mp_div(a, b):
    if b == 0:
        raise Undefined("division by zero")
    return _mp_finite(a / b)


def _mp_atom(atom: ScalarAtom, x):
    lo, hi = atom.domain.lo, atom.domain.hi
    if x < lo or x > hi or (atom.open_at[0] and x == lo) or (atom.open_at[1] and x == hi):
        raise Undefined(f"{atom.name} of {_mp().nstr(x, 17)} is outside its domain")
    try:
        y = atom.mp(x)
    except (ValueError, ZeroDivisionError, TypeError) as err:
        raise Undefined(f"{atom.name} of {_mp().nstr(x, 17)}: {err}") from None
    if isinstance(y, (int, float)):
        y = _mp().mpf(y)
    return _mp_finite(y)


_MP: dict[str, Callable] = {
    "num": _mp_num, "neg": lambda a: -a, "+": lambda a, b: a + b, "-": lambda a, b: a - b,
    "*": lambda a, b: _mp_finite(a * b), "/": _mp_div, "atom": _mp_atom,
    "max": lambda xs: max(xs), "min": lambda xs: min(xs),
}


# NumPy forward mode: pairs (value, slope)
def _np_mul(a, b):
    return a[0] * b[0], a[1] * b[0] + a[0] * b[1]


def _np_div(a, b):
    return a[0] / b[0], (a[1] * b[0] - a[0] * b[1]) / (b[0] * b[0])


def _np_atom(atom: ScalarAtom, a):
    return atom.f(a[0]), atom.df(a[0]) * a[1]


def _np_pick(pairs, better):
    v, d = pairs[0]
    for w, e in pairs[1:]:
        take = better(w, v) | np.isnan(w)
        v, d = np.where(take, w, v), np.where(take, e, d)
    return v, d


_NP: dict[str, Callable] = {
    "num": lambda p: (np.float64(p[0]), np.float64(0.0)), "neg": lambda a: (-a[0], -a[1]),
    "+": lambda a, b: (a[0] + b[0], a[1] + b[1]), "-": lambda a, b: (a[0] - b[0], a[1] - b[1]),
    "*": _np_mul, "/": _np_div, "atom": _np_atom,
    "max": lambda ps: _np_pick(ps, np.greater), "min": lambda ps: _np_pick(ps, np.less),
}


# intervals, outward rounded
_IV: dict[str, Callable] = {
    "num": lambda p: L.enclose(p[1]), "neg": L.neg, "+": L.add, "-": L.sub, "*": L.mul, "/": L.div,
    "atom": lambda atom, box: atom.image(box),
    "max": lambda bs: Interval(max(b.lo for b in bs), max(b.hi for b in bs)),
    "min": lambda bs: Interval(min(b.lo for b in bs), min(b.hi for b in bs)),
}


# intervals where None means "undefined at every point of the box" (and spreads: a part undefined everywhere
# leaves the whole undefined everywhere)
def _lift(fn: Callable) -> Callable:
    def lifted(*args):
        return None if any(a is None for a in args) else fn(*args)
    return lifted


def _nowhere_atom(atom: ScalarAtom, box):
    if box is None:
        return None
    inside = box.meet(atom.domain)
    if inside is None or (inside.is_point and ((atom.open_at[0] and inside.lo == atom.domain.lo)
                                               or (atom.open_at[1] and inside.hi == atom.domain.hi))):
        return None
    return atom.image(inside)


def _nowhere_div(a, b):
    if a is None or b is None or (b.lo == 0 and b.hi == 0):
        return None
    return L.div(a, b)


_NOWHERE: dict[str, Callable] = {
    **{k: _lift(v) for k, v in _IV.items() if k not in ("max", "min", "atom", "/")},
    "max": lambda bs: None if any(b is None for b in bs) else _IV["max"](bs),
    "min": lambda bs: None if any(b is None for b in bs) else _IV["min"](bs),
    "atom": _nowhere_atom, "/": _nowhere_div,
}
