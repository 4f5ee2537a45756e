"""What the analysis found, as plain data: the record that crosses back from the child process.

>>> import sympy as sp
>>> u = sp.Symbol("u", real=True)
>>> facts = facts_of(analyse(u**2, u), Asker())
>>> facts.convex_on, facts.decreasing_on, facts.derivative, facts.second_derivative
((Interval(lo=-inf, hi=inf),), (Interval(lo=-inf, hi=0.0),), '2*u', '2')
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import sympy as sp

from ..lattice import REALS, Interval
from .analysis import PROPS, Analysis, _bounds, _exact, _inner, _outer, analyse
from .limits import Asker

__all__ = ["AtomFacts", "facts_of", "fallback_facts"]


@dataclass(frozen=True)
class AtomFacts:
    """Interval facts of one atom (each a subset of the truth), its domain hull and range, and its words."""

    convex_on: tuple[Interval, ...] = ()
    concave_on: tuple[Interval, ...] = ()
    increasing_on: tuple[Interval, ...] = ()
    decreasing_on: tuple[Interval, ...] = ()
    domain: Interval = REALS
    open_at: tuple[bool, bool] = (False, False)
    bounds: Interval = REALS
    derivative: str = ""
    second_derivative: str = ""
    notes: tuple[str, ...] = ()


def fallback_facts(note: str) -> AtomFacts:
    """The sound default when sympy gave no answer: nothing known, the whole line as domain hull and range."""
    return AtomFacts(derivative="(not derived)", notes=(note,))


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
