"""Why an atom is not monotone or not convex on a box, in words for the reports (no sympy needed)."""
from __future__ import annotations

import math

from ..atoms import ScalarAtom
from ..lattice import Interval


def _fmt(v: float) -> str:
    return ("inf" if v > 0 else "-inf") if math.isinf(v) else f"{v:.6g}"


def _fmt_set(lo: float, hi: float, lo_open: bool, hi_open: bool) -> str:
    return f"{'(' if lo_open or math.isinf(lo) else '['}{_fmt(lo)}, {_fmt(hi)}{')' if hi_open or math.isinf(hi) else ']'}"


def _box(box: Interval) -> str:
    return _fmt_set(box.lo, box.hi, False, False)


def _bad_part(box: Interval, wrong: tuple, right: tuple):
    """A piece of `box` inside some `wrong` interval and outside every `right` one: (lo, hi, lo_open, hi_open)."""
    for w in wrong:
        part = box.meet(w)
        if part is None:
            continue
        lo, hi, lo_open, hi_open = part.lo, part.hi, False, False
        for r in right:  # cut away the right intervals touching the ends (the facts are maximal runs)
            if r.lo <= lo <= r.hi:
                lo, lo_open = r.hi, True
            if r.lo <= hi <= r.hi:
                hi, hi_open = r.lo, True
        if lo < hi or (lo == hi and not (lo_open or hi_open)):
            return lo, hi, lo_open, hi_open
    return None


def _names(atom: ScalarAtom) -> tuple[str, str]:
    return atom.var, atom.second_derivative


def _undecided(atom: ScalarAtom, what: str) -> str:
    """Why a fact is missing: the limit that stopped sympy when there was one, else sympy's indecision."""
    return f"({'; '.join(atom.notes)})" if atom.notes else f"(sympy could not decide {what})"


def explain_monotone(atom: ScalarAtom, box: Interval) -> str | None:
    """Why `atom` is not nondecreasing on `box`, in words; None when it is.

    >>> from dcpnet.atoms import SCALAR_ATOMS
    >>> explain_monotone(SCALAR_ATOMS["square"], Interval(-1.0, float("inf")))
    "square'(u) = 2u < 0 for u in [-1, 0), inside the range [-1, inf)"
    """
    if atom.monotonicity_on_box(box).value in ("nondecreasing", "constant"):
        return None
    var, _ = _names(atom)
    bad = _bad_part(box, atom.decreasing_on, atom.increasing_on)
    if bad is None:
        return (f"{atom.name}'({var}) = {atom.derivative} is not proved >= 0 for {var} in {box} "
                f"{_undecided(atom, 'its sign there')}")
    return f"{atom.name}'({var}) = {atom.derivative} < 0 for {var} in {_fmt_set(*bad)}, inside the range {_box(box)}"


def explain_convex(atom: ScalarAtom, box: Interval) -> str | None:
    """Why `atom` is not convex on `box`, in words; None when it is.

    >>> from dcpnet.atoms import PARAMETRIC_ATOMS
    >>> explain_convex(PARAMETRIC_ATOMS["leaky_relu"](2.0), Interval(-1.0, 1.0))
    'leaky_relu(u, 2) has a kink at u = 0 where its slope drops (2 for u < 0, 1 for u > 0), inside the range [-1, 1]'
    """
    if atom.convex_on_box(box):
        return None
    var, d2 = _names(atom)
    bad = _bad_part(box, atom.concave_on, atom.convex_on)
    if bad is not None and (bad[0] < bad[1]):
        what = f"{atom.name}''({var}) = {d2} < 0" if d2 else f"{atom.name} is concave, not convex,"
        return f"{what} for {var} in {_fmt_set(*bad)}, inside the range {_box(box)}"
    for a in atom.convex_on:  # two convex intervals meeting inside the box without merging: a kink
        for b in atom.convex_on:
            if a.hi == b.lo and box.lo < a.hi < box.hi:
                return (f"{atom.formula} has a kink at {var} = {_fmt(a.hi)} where its slope drops "
                        f"({atom.derivative}), inside the range {_box(box)}")
    return f"{atom.name} is not proved convex for {var} in {box} {_undecided(atom, 'the sign of its f' + chr(39) * 2)}"


__all__ = ["explain_convex", "explain_monotone"]
