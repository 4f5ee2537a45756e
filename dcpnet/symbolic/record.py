"""The ScalarAtom records of user atoms: facts from sympy (in a child, under limits), values from the body.

`user_atom` is the production path. The child process converts the body to sympy and analyses it; only
plain facts come back (`AtomFacts`). The record's values (NumPy f and f', mpmath, the interval enclosure
that bounds undecided regions) are read from the body as written (`dcpnet.body`), never from sympy's
simplified form. On a limit the facts are the sound default and the record's `notes` say why.

`derive` is the in-process path for a sympy formula (the tests' catalogue and the self-check of the
built-in table): values by lambdify, no child.
"""
from __future__ import annotations

import mpmath
import numpy as np
import sympy as sp

from .. import syntax as st
from ..atoms import ScalarAtom
from ..body import Body, TooLarge
from ..lattice import REALS, point
from . import limits
from .analysis import NUMPY_EXTRAS, Analysis, analyse
from .convert import to_sympy
from .facts import AtomFacts, derive_facts, facts_of, fallback_facts
from .limits import Asker, Limit, run_each_limited, run_limited


def user_atom(net, name: str) -> ScalarAtom:
    """The record of the user atom `name` of `net`, derived once per network (kept in `net.user_atoms`).

    >>> from dcpnet.graph import load_text
    >>> net = load_text("input x\\natom sq(t) = t^2\\ny = sq(x)\\n")
    >>> a = user_atom(net, "sq")
    >>> a.increasing_on, a.decreasing_on, a.derivative, a.var
    ((Interval(lo=0.0, hi=inf),), (Interval(lo=-inf, hi=0.0),), '2*t', 't')
    """
    if name not in net.user_atoms:
        _build_all(net)   # every atom of the network at once: one child, sympy's caches shared
    return net.user_atoms[name]


def _build_all(net) -> None:
    bodies, unusable = {}, {}
    for name, d in net.atom_defs.items():
        if name in net.user_atoms:
            continue
        try:
            bodies[name] = Body.of(net.atom_defs, name)
        except TooLarge as err:
            unusable[name] = _unusable(d, _body_text(net, d), str(err))
    names = list(bodies)
    defs = net.atom_defs
    nowhere = {n for n in names if bodies[n].defined_nowhere()}
    asked = [n for n in names if n not in nowhere]
    results = dict(zip(asked, run_each_limited(lambda n: _child_facts(defs, n), asked, limits.WALL_SECONDS,
                                               limits.MEMORY_BYTES)))
    results.update({n: _VACUOUS for n in nowhere})
    for name, facts in results.items():
        if isinstance(facts, Limit):
            facts = fallback_facts(f"{facts}: its facts are unknown, its range is bounded by interval evaluation")
        d = net.atom_defs[name]
        net.user_atoms[name] = _from_body(d, _body_text(net, d), bodies[name], facts)
    net.user_atoms.update(unusable)


# an atom defined at no real point: every claim about it holds vacuously (the README's choice), so every
# fact is listed on the whole line and its range is a point
_VACUOUS = AtomFacts((REALS,), (REALS,), (REALS,), (REALS,), bounds=point(0.0), derivative="(defined nowhere)",
                     notes=("defined at no real point: every claim about it holds vacuously",))


def _child_facts(defs: dict, name: str) -> AtomFacts:
    """Runs in the child: the body to sympy, then the analysis (each question under its own alarm)."""
    expr, var, conditions = to_sympy(defs, name)
    return derive_facts(expr, var, conditions, limits.ATOM_SECONDS)


def _from_body(d: st.AtomDef, formula: str, body: Body, facts: AtomFacts) -> ScalarAtom:
    return ScalarAtom(
        name=d.name, formula=formula, derivative=facts.derivative,
        convex_on=facts.convex_on, concave_on=facts.concave_on,
        increasing_on=facts.increasing_on, decreasing_on=facts.decreasing_on,
        f=lambda u: body.numpy(u)[0], df=lambda u: body.numpy(u)[1], mp=body.mp,
        domain=facts.domain, open_at=facts.open_at, bounds=facts.bounds, enclose=body.enclosure,
        var=d.arg, second_derivative=facts.second_derivative, notes=facts.notes,
    )


def _unusable(d: st.AtomDef, formula: str, why: str) -> ScalarAtom:
    """A body too large to read: no facts, no values (so no witness), no range."""
    def undefined(u):
        raise ValueError(why)

    nan = lambda u: np.full_like(np.asarray(u, dtype=float), np.nan)
    return ScalarAtom(name=d.name, formula=formula, derivative="(not derived)", convex_on=(), concave_on=(),
                      increasing_on=(), decreasing_on=(), f=nan, df=nan, mp=undefined,
                      enclose=lambda box: fallback_facts(why).bounds, var=d.arg, notes=(why,))


def _body_text(net, d: st.AtomDef) -> str:
    lines = net.source.lines if net.source else []
    line = lines[d.pos.line - 1] if 0 < d.pos.line <= len(lines) else ""
    text = line.split("#", 1)[0]
    return text.split("=", 1)[1].strip() if "=" in text else d.name


# -- a sympy formula, in process --------------------------------------------------------------------------
def derive(expr: sp.Expr, var: sp.Symbol, name: str, formula: str, conditions: tuple = ()) -> ScalarAtom:
    """The ScalarAtom record of f = expr(var), its values by lambdify (tests and the table's self-check).

    >>> u = sp.Symbol("u", real=True)
    >>> a = derive(u * sp.log(u), u, "xlx", "u*log(u)")
    >>> a.convex_on, a.domain, a.open_at
    ((Interval(lo=0.0, hi=inf),), Interval(lo=0.0, hi=inf), (True, False))
    """
    conditions = tuple(conditions)
    try:   # under the same limits as a user atom's: no alarm ever runs in this process
        facts, slope = run_limited(_facts_and_slope, (expr, var, conditions))
        slope = sp.sympify(slope, locals={var.name: var})
    except Limit as err:
        facts, slope = fallback_facts(str(err)), sp.diff(expr, var)
    mp = _mpmath(var, expr)
    return ScalarAtom(
        name=name, formula=formula, derivative=facts.derivative,
        convex_on=facts.convex_on, concave_on=facts.concave_on,
        increasing_on=facts.increasing_on, decreasing_on=facts.decreasing_on,
        f=_numpy(var, expr, mp), df=_numpy(var, slope), mp=mp,
        domain=facts.domain, open_at=facts.open_at, bounds=facts.bounds,
        var=var.name, second_derivative=facts.second_derivative, notes=facts.notes,
    )


def _facts_and_slope(expr, var, conditions) -> tuple[AtomFacts, str]:
    """Runs in the child: the facts, and f' as text (plain data crosses back, not sympy objects)."""
    ask = Asker(limits.ATOM_SECONDS)
    an = analyse(expr, var, conditions, ask)
    return facts_of(an, ask), sp.srepr(_df_expr(an))


def _numpy(var, e, mp=None):
    """An elementwise NumPy function; mpmath where floats overflow."""
    raw = sp.lambdify(var, e, modules=[NUMPY_EXTRAS, "numpy"])

    def f(u):
        u = np.asarray(u, dtype=float)
        with np.errstate(all="ignore"):
            out = np.asarray(raw(u), dtype=float) + np.zeros_like(u)
        if mp is not None:
            _repair(out, u, mp)
        return out[()] if out.ndim == 0 else out

    return f


def _repair(out: np.ndarray, u: np.ndarray, mp) -> None:
    """Recompute the few entries that came out inf or nan at finite points (exp(800) overflowing in log(1 + e^u))."""
    bad = np.flatnonzero(~np.isfinite(out) & np.isfinite(u))
    if 0 < bad.size <= 1000:
        flat_out, flat_u = out.reshape(-1), u.reshape(-1)
        for i in bad:
            try:
                v = mp(flat_u[i])
                flat_out[i] = float(v) if isinstance(v, mpmath.mpf) else np.nan
            except (ValueError, ZeroDivisionError, TypeError, OverflowError):
                pass


def _mpmath(var, e):
    raw = sp.lambdify(var, e, modules="mpmath")

    def mp(u):
        v = raw(mpmath.mpf(u))
        return v if isinstance(v, mpmath.mpc) else mpmath.mpf(v)

    return mp


def _df_expr(an: Analysis):
    """f' as one Piecewise over the pieces, taking the left derivative at each kink."""
    if not an.pieces:
        return sp.diff(an.expr, an.var)
    if len(an.pieces) == 1:
        return an.pieces[0][3]
    branches = [(d1, an.var <= b) for a, b, _, d1 in an.pieces[:-1]]
    return sp.Piecewise(*branches, (an.pieces[-1][3], True))


__all__ = ["derive", "user_atom"]
