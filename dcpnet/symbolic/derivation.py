"""Facts from sympy: the analysis rounded to intervals (what the child process runs for a user atom), and the
in-process ScalarAtom of a sympy formula (the tests' catalogue and the self-check of the built-in table).

>>> u = sp.Symbol("u", real=True)
>>> facts = facts_of(analyse(u**2, u), Asker())
>>> facts.convex_on, facts.decreasing_on, facts.derivative, facts.second_derivative
((Interval(lo=-inf, hi=inf),), (Interval(lo=-inf, hi=0.0),), '2*u', '2')
"""
from __future__ import annotations

import math

import mpmath
import numpy as np
import sympy as sp

from ..atoms import ScalarAtom
from ..lattice import REALS
from . import limits
from .analysis import NUMPY_EXTRAS, PROPS, Analysis, _bounds, _exact, _inner, _outer, analyse
from .facts import AtomFacts, fallback_facts
from .limits import Asker, Limit, run_limited

__all__ = ["derive", "derive_facts", "facts_of"]


def facts_of(an: Analysis, ask: Asker) -> AtomFacts:
    """The facts of an analysis, rounded inward (facts) and outward (domain hull, range)."""
    facts = {p: tuple(iv for iv in (_inner(*run) for run in an.facts[p]) if iv is not None) for p in PROPS}
    if an.components:
        lo, _, lo_open, _ = an.components[0]
        _, hi, _, hi_open = an.components[-1]
        dom = _outer(lo, hi)
        # a float end that is not the exact end lies outside the domain: it is excluded
        open_at = (not math.isinf(dom.lo) and (lo_open or not _exact(dom.lo, lo)),
                   not math.isinf(dom.hi) and (hi_open or not _exact(dom.hi, hi)))
    else:
        dom, open_at = REALS, (False, False)
    d2 = sp.sstr(an.pieces[0][3].diff(an.var)) if len(an.pieces) == 1 else ""
    return AtomFacts(facts["convex"], facts["concave"], facts["increasing"], facts["decreasing"],
                     dom, open_at, _bounds(an, ask), derivative_text(an), d2)


def derivative_text(an: Analysis) -> str:
    """f' in words: one formula, or one per piece with the ranges where each holds."""
    if not an.pieces:
        return sp.sstr(sp.diff(an.expr, an.var))
    texts = [(a, b, sp.sstr(d1)) for a, b, _, d1 in an.pieces]
    merged = [list(texts[0])]
    for a, b, t in texts[1:]:
        if t == merged[-1][2] and a == merged[-1][1]:
            merged[-1][1] = b
        else:
            merged.append([a, b, t])
    if len(merged) == 1:
        return merged[0][2]
    v = an.var.name

    def where(a, b):
        if a is sp.S.NegativeInfinity:
            return f"{v} < {sp.sstr(b)}"
        if b is sp.oo:
            return f"{v} > {sp.sstr(a)}"
        return f"{sp.sstr(a)} < {v} < {sp.sstr(b)}"

    return ", ".join(f"{t} for {where(a, b)}" for a, b, t in merged)


def derive_facts(expr: sp.Expr, var: sp.Symbol, conditions: tuple = (), seconds: float | None = None) -> AtomFacts:
    """analyse + facts_of under one atom's question budget (what the child process runs)."""
    ask = Asker() if seconds is None else Asker(seconds)
    return facts_of(analyse(expr, var, tuple(conditions), ask), ask)


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
