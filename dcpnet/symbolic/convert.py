"""The body of a user atom as a sympy formula, with the conditions its built-ins put on their arguments."""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from .. import syntax as st
from ..atoms import SCALAR_ATOMS, SELU_A, SELU_L
from ..lattice import INF


# -- the language's built-ins as sympy formulas -----------------------------------------------------
def _dec(v: float) -> sp.Rational:
    """A float as the exact decimal it prints as (0.1 → 1/10)."""
    return sp.Rational(repr(float(v)))


_SELU_L, _SELU_A = _dec(SELU_L), _dec(SELU_A)

# name → (formula of the argument a, conditions on a beyond those the formula implies)
BUILTIN_FORMULAS: dict[str, tuple] = {
    "relu": (lambda a: sp.Max(a, 0), ()),
    "abs": (lambda a: sp.Abs(a), ()),
    "square": (lambda a: a**2, ()),
    "sqrt": (lambda a: sp.sqrt(a), ()),
    "exp": (lambda a: sp.exp(a), ()),
    "log": (lambda a: sp.log(a), ()),
    "softplus": (lambda a: sp.log(1 + sp.exp(a)), ()),
    "sigmoid": (lambda a: 1 / (1 + sp.exp(-a)), ()),
    "tanh": (lambda a: sp.tanh(a), ()),
    "elu": (lambda a: sp.Max(a, 0) + sp.exp(sp.Min(a, 0)) - 1, ()),
    "selu": (lambda a: _SELU_L * (sp.Max(a, 0) + _SELU_A * (sp.exp(sp.Min(a, 0)) - 1)), ()),
    "gelu": (lambda a: a * (1 + sp.erf(a / sp.sqrt(2))) / 2, ()),
    "silu": (lambda a: a / (1 + sp.exp(-a)), ()),
    "inv_pos": (lambda a: 1 / a, (">0",)),
    "entr": (lambda a: sp.Piecewise((-a * sp.log(a), a > 0), (0, True)), (">=0",)),
    "huber": (lambda a: sp.Min(sp.Abs(a), 1) ** 2 + 2 * sp.Max(sp.Abs(a) - 1, 0), ()),
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
            return self.call(e.func, [self.expr(a, env) for a in e.args])
        raise ValueError(f"{type(e).__name__} cannot appear in an atom body")

    def power(self, base: sp.Expr, p: float) -> sp.Expr:
        # the domain follows `atoms.power`: u ≥ 0 for fractional p, u > 0 for any p < 0 (as in CVXPY)
        q = _dec(p)
        if q < 0:
            self.conditions.append((base, ">0"))
        elif not q.is_integer:
            self.conditions.append((base, ">=0"))
        return sp.Integer(1) if q == 0 else base**q

    def call(self, func: str, args: list[sp.Expr]) -> sp.Expr:
        if func in BUILTIN_FORMULAS:
            formula, conds = BUILTIN_FORMULAS[func]
            self.conditions.extend((args[0], c) for c in conds)
            self.conditions.extend(_table_domain(func, args[0]))
            return formula(args[0])
        if func == "leaky_relu":
            if not args[1].is_number:
                raise ValueError("leaky_relu needs a constant slope")
            return leaky_relu_formula(args[0], args[1])
        if func in ("maximum", "minimum"):
            return (sp.Max if func == "maximum" else sp.Min)(*args)
        d = self.defs[func]  # an earlier user atom: inline it
        return self.expr(d.body, {d.arg: args[0]})


def _table_domain(func: str, a: sp.Expr) -> list:
    """The built-in's domain, read from its row of the table (sympy's simplifications may drop it:
    sqrt(a)^6 becomes a^3)."""
    row = SCALAR_ATOMS[func]
    out = []
    lo, hi = row.domain.lo, row.domain.hi
    if lo > -INF:
        out.append((a - _dec(lo), ">0" if row.open_at[0] else ">=0"))
    if hi < INF:
        out.append((_dec(hi) - a, ">0" if row.open_at[1] else ">=0"))
    return out


def to_sympy(defs: dict, name: str) -> tuple[sp.Expr, sp.Symbol, tuple]:
    """The body of user atom `name` as a sympy expression in its argument, and its domain conditions."""
    d = defs[name]
    var = sp.Symbol(d.arg, real=True)
    conv = _Converter(defs)
    expr = conv.expr(d.body, {d.arg: var})
    return expr, var, tuple(conv.conditions)

