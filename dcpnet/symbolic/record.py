"""The ScalarAtom records of user atoms: facts kept from an earlier run or from sympy (in a child, under
limits), values from the body.

The child process converts the body to sympy and analyses it; only plain facts come back (`AtomFacts`),
and they are kept (`kept.py`) so the next run needs no sympy at all (sympy is imported only when some facts
are not kept). The record's values (NumPy f and f',
mpmath, the interval enclosure that bounds undecided regions) are read from the body as written
(`dcpnet.body`), never from sympy's simplified form. On a limit the facts are the sound default and the
record's `notes` say why; those are never kept (a later run, with more time, may do better).
"""
from __future__ import annotations

import numpy as np

from .. import syntax as st
from ..atoms import ScalarAtom
from ..body import Body, TooLarge
from ..lattice import REALS, point
from . import kept, limits
from .facts import AtomFacts, fallback_facts
from .limits import Limit, run_each_limited


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
    defs = net.atom_defs
    results = {n: _VACUOUS for n, body in bodies.items() if body.defined_nowhere()}
    keys = {n: kept.key(defs, n) for n in bodies if n not in results}
    results.update({n: facts for n, key in keys.items() if (facts := kept.facts(key)) is not None})
    asked = [n for n in keys if n not in results]
    if asked:   # imported here, once per process: each child is forked with it (importing it costs more than most atoms)
        from . import convert, derivation  # noqa: F401
    for name, facts in zip(asked, run_each_limited(lambda n: _child_facts(defs, n), asked, limits.WALL_SECONDS,
                                                   limits.MEMORY_BYTES)):
        if isinstance(facts, AtomFacts):
            kept.keep_facts(keys[name], facts)
        elif isinstance(facts, Limit):
            facts = fallback_facts(f"{facts}: its facts are unknown, its range is bounded by interval evaluation")
        results[name] = facts
    for name, body in bodies.items():
        d = defs[name]
        net.user_atoms[name] = _from_body(d, _body_text(net, d), body, results[name])
    net.user_atoms.update(unusable)


# an atom defined at no real point: every claim about it holds vacuously (the README's choice), so every
# fact is listed on the whole line and its range is a point
_VACUOUS = AtomFacts((REALS,), (REALS,), (REALS,), (REALS,), bounds=point(0.0), derivative="(defined nowhere)",
                     notes=("defined at no real point: every claim about it holds vacuously",))


def _child_facts(defs: dict, name: str) -> AtomFacts:
    """Runs in the child: the body to sympy, then the analysis (each question under its own alarm)."""
    from .convert import to_sympy  # sympy is imported here, in the child, only when facts are not kept
    from .derivation import derive_facts

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


__all__ = ["user_atom"]
