"""What the analysis found, as plain data: the record that crosses back from the child process, and is kept.

No sympy here: a network whose atoms' facts are kept (`kept.py`) is checked without importing it.

>>> f = AtomFacts(convex_on=(REALS,), derivative="2*u")
>>> facts_from_json(facts_json(f)) == f
True
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from ..lattice import REALS, Interval

__all__ = ["AtomFacts", "facts_from_json", "facts_json", "fallback_facts"]


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


# -- as JSON: every float exactly (repr round-trips; infinities as the strings "inf" and "-inf") -------------
def facts_json(facts: AtomFacts) -> dict:
    return {k: _plain(v) for k, v in asdict(facts).items()}


def facts_from_json(doc: dict) -> AtomFacts:
    """The facts of `facts_json`; a KeyError, TypeError or ValueError for anything else."""
    def interval(pair) -> Interval:
        lo, hi = (float(v) for v in pair)
        if not lo <= hi:
            raise ValueError("not an interval")
        return Interval(lo, hi)
    shapes = {"domain": interval, "bounds": interval, "open_at": lambda v: tuple(bool(b) for b in v),
              "derivative": str, "second_derivative": str, "notes": lambda v: tuple(str(s) for s in v)}
    return AtomFacts(**{f.name: shapes.get(f.name, lambda v: tuple(map(interval, v)))(doc[f.name])
                        for f in fields(AtomFacts)})


def _plain(v):
    if isinstance(v, dict):                      # an Interval, after asdict
        return [_plain(v["lo"]), _plain(v["hi"])]
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v
