"""The body of a user atom as a sympy formula, with the conditions its built-ins put on their arguments."""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from .. import syntax as st
from ..atoms import PARAMETRIC_ATOMS, SCALAR_ATOMS, ScalarAtom, power
from ..lattice import INF


# -- the language's built-ins as sympy formulas: each read from its row of the atom table ------------
def _dec(v: float) -> sp.Rational:
    """A float as the exact decimal it prints as (0.1 → 1/10)."""
    return sp.Rational(repr(float(v)))


# name → (formula of the argument a, extra conditions on a): the table's `sympy` form; the domain comes from
# the row too (`_row_domain`), so no condition is written here
BUILTIN_FORMULAS: dict[str, tuple] = {
    name: ((lambda a, row=row: row.sympy(sp, a)), ()) for name, row in SCALAR_ATOMS.items()
}


def leaky_relu_formula(a: sp.Expr, slope: sp.Expr) -> sp.Expr:
    return sp.Max(a, 0) + slope * sp.Min(a, 0)


# -- syntax tree → sympy ----------------------------------------------------------------------------
@dataclass
class _Converter:
    defs: dict
    conditions: list = field(default_factory=list)   # (g, ">0" | ">=0" | "!=0")

    def expr(self, e: st.Expr, env: dict[str, sp.Expr]) -> sp.Expr:
        if isinstance(e, st.Num):   # the decimal as written, exactly
            return sp.Rational(e.exact.numerator, e.exact.denominator) if e.exact is not None else _dec(e.value)
        if isinstance(e, st.Name):
            return env[e.id]
        if isinstance(e, st.Neg):
            return -self.expr(e.operand, env)
        if isinstance(e, st.BinOp):
            a, b = self.expr(e.left, env), self.expr(e.right, env)
            if e.op == "/":   # kept before sympy simplifies: (u - u)/(u - u) has no point of its domain
                self.conditions.append((b, "!=0"))
                return a / b
            return {"+": a + b, "-": a - b, "*": a * b}[e.op]
        if isinstance(e, st.Pow):
            return self.power(self.expr(e.base, env), e.exponent)
        if isinstance(e, st.Call):
            if e.func in PARAMETRIC_ATOMS:   # the slope is the row's parameter (the nearest double)
                return self.call(e.func, [self.expr(e.args[0], env)], e.args[1].value)
            return self.call(e.func, [self.expr(a, env) for a in e.args])
        raise ValueError(f"{type(e).__name__} cannot appear in an atom body")

    def power(self, base: sp.Expr, p: float) -> sp.Expr:
        return self.row(power(p), base)   # the domain follows the row: u ≥ 0 for fractional p, u > 0 for p < 0

    def row(self, row: ScalarAtom, a: sp.Expr) -> sp.Expr:
        self.conditions.extend(_row_domain(row, a))
        return row.sympy(sp, a)

    def call(self, func: str, args: list[sp.Expr], slope: float | None = None) -> sp.Expr:
        if func in SCALAR_ATOMS:
            return self.row(SCALAR_ATOMS[func], args[0])
        if func in PARAMETRIC_ATOMS:
            return self.row(PARAMETRIC_ATOMS[func](slope), args[0])
        if func in ("maximum", "minimum"):
            return (sp.Max if func == "maximum" else sp.Min)(*args)
        d = self.defs[func]  # an earlier user atom: inline it
        return self.expr(d.body, {d.arg: args[0]})


def _row_domain(row: ScalarAtom, a: sp.Expr) -> list:
    """The built-in's domain, read from its row of the table (sympy's simplifications may drop it:
    sqrt(a)^6 becomes a^3)."""
    out = []
    lo, hi = row.domain.lo, row.domain.hi
    if lo > -INF:
        out.append((a - sp.Rational(lo), ">0" if row.open_at[0] else ">=0"))
    if hi < INF:
        out.append((sp.Rational(hi) - a, ">0" if row.open_at[1] else ">=0"))
    return out


def to_sympy(defs: dict, name: str) -> tuple[sp.Expr, sp.Symbol, tuple]:
    """The body of user atom `name` as a sympy expression in its argument, and its domain conditions."""
    d = defs[name]
    var = sp.Symbol(d.arg, real=True)
    conv = _Converter(defs)
    expr = conv.expr(d.body, {d.arg: var})
    return expr, var, tuple(conv.conditions)

