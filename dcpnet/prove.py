"""Curvature analysis: one pass over the DAG with the composition rules of SPEC section 2 ("Rules").

Ranges are computed once per network (they do not depend on which variables are asked about). Curvature
is computed with respect to a set of variables: every other name is a constant whose range is its declared
constraint. "Not convex" is a verdict, never an exception: when the rules stop, `why_not` walks down from
the claim to the lowest node where a rule failed and says which rule and why.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import lattice as L
from .atoms import REDUCTIONS, ScalarAtom
from .graph import Network, Node
from .lattice import Curvature, Interval, Monotonicity

C = Curvature
M = Monotonicity
PROPERTIES = ("convex", "concave", "affine")


def holds(curvature: Curvature, prop: str) -> bool:
    """Does a proved curvature class establish the property?"""
    return {"convex": curvature.is_convex, "concave": curvature.is_concave, "affine": curvature.is_affine}[prop]


def _mirror(prop: str) -> str:
    return {"convex": "concave", "concave": "convex"}.get(prop, prop)


@dataclass(frozen=True)
class Step:
    """The rule applied at one node: the curvature it gives and the rule in words.

    The words are a template and its arguments, formatted only when a report asks: most steps of a large
    network are never shown.
    """

    curvature: Curvature
    template: str
    args: tuple = ()

    @property
    def rule(self) -> str:
        return self.template.format(*self.args) if self.args else self.template


@dataclass(frozen=True)
class Failure:
    """Where and why a proof stopped: the node, the rule that failed, and a hint when one exists."""

    node: int
    rule: str
    reason: str
    hint: str | None = None
    need: str | None = None     # for an outer function of the wrong monotonicity: the one the rule needed


class Analyzer:
    """The ranges of a network's nodes, and its curvature with respect to any set of variables.

    >>> from dcpnet.graph import load_text
    >>> net = load_text("input x\\ny = relu(x)^2\\n")
    >>> Analyzer(net).curvature("y", ["x"])
    <Curvature.CONVEX: 'convex'>
    """

    def __init__(self, net: Network):
        self.net = net
        self.ranges: list[Interval] = []
        self.atoms: dict[int, ScalarAtom] = {}
        self._steps: dict[frozenset, list[Step]] = {}
        for node in net.nodes:
            self.ranges.append(self._range(node))

    # -- ranges ------------------------------------------------------------------------------------
    def atom(self, node: Node) -> ScalarAtom:
        if node.id not in self.atoms:
            self.atoms[node.id] = self.net.scalar_atom(node.attrs)
        return self.atoms[node.id]

    def _range(self, node: Node) -> Interval:
        r = [self.ranges[a] for a in node.args]
        op = node.op
        if op == "var":
            return self.net.variables[node.attrs[0]].bounds
        if op == "const":
            return L.point(node.attrs[0])
        if op in ("add", "sub", "mul", "div"):
            return {"add": L.add, "sub": L.sub, "mul": L.mul, "div": L.div}[op](r[0], r[1])
        if op == "neg":
            return L.neg(r[0])
        if op == "matmul":
            inner = self.net.nodes[node.args[1]].shape[0]
            return L.scale(L.mul(r[0], r[1]), inner)
        if op in ("index", "slice"):
            return r[0]
        if op == "concat":                   # one interval for all entries: the hull of the pieces'
            out = r[0]
            for piece in r[1:]:
                out = out.hull(piece)
            return out
        if op == "scalar":
            return self.atom(node).image(r[0])
        sizes = [self.net.nodes[a].size for a in node.args]
        return REDUCTIONS[node.attrs[0]].image(r, sizes)

    def range(self, name_or_id) -> Interval:
        return self.ranges[self._id(name_or_id)]

    def _id(self, name_or_id) -> int:
        return self.net.names[name_or_id] if isinstance(name_or_id, str) else name_or_id

    # -- curvature ---------------------------------------------------------------------------------
    def steps(self, wrt) -> list[Step]:
        """The rule at every node for the variables `wrt` (computed for all nodes once, then cached)."""
        key = frozenset(wrt)
        if key not in self._steps:
            steps: list[Step] = []
            for node in self.net.nodes:
                steps.append(self._step(node, key, steps))
            self._steps[key] = steps
        return self._steps[key]

    def curvature(self, name_or_id, wrt) -> Curvature:
        return self.steps(self.net.resolve_wrt(list(wrt)))[self._id(name_or_id)].curvature

    def curvature_once(self, name_or_id, wrt) -> Curvature:
        """The same answer without caching, over the target's ancestors only (for searches over many sets)."""
        key = frozenset(self.net.resolve_wrt(list(wrt)))
        root = self._id(name_or_id)
        steps: dict[int, Step] = {}
        for i in self.net.ancestors(root):
            steps[i] = self._step(self.net.nodes[i], key, steps)
        return steps[root].curvature

    def _step(self, node: Node, wrt: frozenset, steps: list[Step]) -> Step:
        kids = [steps[a].curvature for a in node.args]
        op = node.op
        if op == "var":
            return Step(C.AFFINE, "variable") if node.attrs[0] in wrt else Step(C.CONSTANT, "fixed (not a variable)")
        if op == "const" or (kids and all(k is C.CONSTANT for k in kids)):
            return Step(C.CONSTANT, "constant in the variables")
        if op == "add":
            return Step(L.add_curvature(kids[0], kids[1]), "sum: {} + {}", (kids[0], kids[1]))
        if op == "sub":
            return Step(L.add_curvature(kids[0], L.flip(kids[1])), "difference: {} - {}", (kids[0], kids[1]))
        if op == "neg":
            return Step(L.flip(kids[0]), "negation of {}", (kids[0],))
        if op in ("index", "slice"):
            return Step(kids[0], "an entry keeps the curvature")
        if op == "concat":                   # a vector is convex when every entry is: the join of the pieces
            curv = kids[0]
            for k in kids[1:]:
                curv = L.add_curvature(curv, k)
            return Step(curv, "concatenation: every piece {}", (curv,))
        if op in ("mul", "matmul", "div"):
            return self._product_step(node, kids)
        if op == "scalar":
            return self._scalar_step(node, kids)
        return self._reduction_step(node, kids)

    def _product_step(self, node: Node, kids: list[Curvature]) -> Step:
        factor_at, g_at = self._constant_factor(node, kids)
        if factor_at is None:
            return Step(C.UNKNOWN, "product of two factors that both depend on the variables: not covered")
        factor = self._factor_range(node, factor_at)
        curv = L.scale_curvature(kids[g_at], factor)
        sign = "≥ 0" if factor.nonneg else "≤ 0" if factor.nonpos else "of either sign"
        return Step(curv, "scaling by a constant {} ({}): {} → {}", (sign, factor, kids[g_at], curv))

    def _factor_range(self, node: Node, factor_at: int) -> Interval:
        """The constant factor's range; for a divisor, 1/c has c's sign (c = 0 is outside the domain)."""
        r = self.ranges[node.args[factor_at]]
        if node.op != "div":
            return r
        return L.NONNEG if r.nonneg else L.NONPOS if r.nonpos else L.reciprocal(r)

    @staticmethod
    def _constant_factor(node: Node, kids: list[Curvature]) -> tuple[int | None, int]:
        """(index of the constant factor, index of the other), or (None, 0) when both vary."""
        if node.op == "div":
            return (1, 0) if kids[1] is C.CONSTANT else (None, 0)
        if kids[0] is C.CONSTANT:
            return 0, 1
        if kids[1] is C.CONSTANT:
            return 1, 0
        return None, 0

    def _scalar_step(self, node: Node, kids: list[Curvature]) -> Step:
        f = self.atom(node)
        box = self.box(node)
        if box is None:  # defined nowhere: every claim holds vacuously (the range is a sound outer bound)
            return Step(C.CONSTANT, "{} is defined nowhere: its argument never lies in its domain {}",
                        (_called(f), f.domain))
        mono = f.monotonicity_on_box(box)
        if mono is M.CONSTANT:
            return Step(C.CONSTANT, "{} is constant on {}", (_called(f), box))
        g = kids[0]
        convex = f.convex_on_box(box) and _arg_ok(g, mono, "convex") and self._domain_ok(node, f, g)
        concave = f.concave_on_box(box) and _arg_ok(g, mono, "concave") and self._domain_ok(node, f, g)
        curv = L.curvature_of(convex, concave)
        return Step(curv, "composition: {} {}, {} on {}; argument {}", (_called(f), _ShapeWords(f, box), mono, box, g))

    def box(self, node: Node) -> Interval | None:
        """The argument's range met with the atom's domain: where the atom's facts are read."""
        return self.ranges[node.args[0]].meet(self.atom(node).domain)

    def _domain_ok(self, node: Node, f: ScalarAtom, g: Curvature) -> bool:
        """Where the argument may leave the domain, the set where it stays inside must be convex:
        {g ≥ c} is convex for concave g, {g ≤ c} for convex g (extended-value composition)."""
        r = self.ranges[node.args[0]]
        if f.defined_on(r) or g.is_affine:
            return True
        below = r.lo < f.domain.lo or (f.open_at[0] and r.lo <= f.domain.lo)
        above = r.hi > f.domain.hi or (f.open_at[1] and r.hi >= f.domain.hi)
        return (not below or g.is_concave) and (not above or g.is_convex)

    def _reduction_step(self, node: Node, kids: list[Curvature]) -> Step:
        rec = REDUCTIONS[node.attrs[0]]
        monos = self.reduction_monotonicity(node)
        convex = rec.convex and all(_arg_ok(g, m, "convex") for g, m in zip(kids, monos))
        concave = rec.concave and all(_arg_ok(g, m, "concave") for g, m in zip(kids, monos))
        curv = L.curvature_of(convex, concave)
        shape = "affine" if rec.convex and rec.concave else "convex" if rec.convex else "concave"
        return Step(curv, "composition: {} {}; {}", (rec.name, shape, _ArgWords(tuple(zip(kids, monos)))))

    def reduction_monotonicity(self, node: Node) -> list[Monotonicity]:
        rec = REDUCTIONS[node.attrs[0]]
        monos = []
        for i, a in enumerate(node.args):
            if i == 1 and rec.monotone_v == "decreasing":   # quad_over_lin's scalar v
                monos.append(M.DECREASING)
            elif rec.monotone == "increasing":
                monos.append(M.INCREASING)
            else:
                r = self.ranges[a]
                monos.append(L.monotonicity_of(r.nonneg, r.nonpos))
        return monos

    # -- implicit domains ---------------------------------------------------------------------------
    def conditions(self, root) -> list[str]:
        """The domain conditions `root` relies on that its ranges do not already guarantee, in words.

        The analysis reads every claim on the set where these hold (SPEC: "where the expression is defined").
        """
        out = []
        for i in self.net.ancestors(self._id(root)):
            node = self.net.nodes[i]
            text = self._condition(node)
            if text and text not in out:
                out.append(text)
        return out

    def _condition(self, node: Node) -> str | None:
        if node.op == "scalar":
            f, r = self.atom(node), self.ranges[node.args[0]]
            if f.defined_on(r):
                return None
            arg = self.net.nodes[node.args[0]].label
            return f"{_called(f)} needs `{arg}` in {_domain_words(f)}"
        if node.op == "div":
            r = self.ranges[node.args[1]]
            return None if r.lo > 0 or r.hi < 0 else f"`{self.net.nodes[node.args[1]].label}` ≠ 0 (a divisor)"
        if node.op == "reduce" and node.attrs[0] == "quad_over_lin":
            r = self.ranges[node.args[1]]
            return None if r.lo > 0 else f"quad_over_lin needs `{self.net.nodes[node.args[1]].label}` > 0"
        return None

    # -- explaining a failure ------------------------------------------------------------------------
    def why_not(self, root, prop: str, wrt) -> Failure:
        """Walk down from `root` to the lowest node where the rules could not give `prop`."""
        wrt = self.net.resolve_wrt(list(wrt))
        steps = self.steps(wrt)
        node_id = self._id(root)
        while True:
            if prop == "affine":
                prop = "convex" if not steps[node_id].curvature.is_convex else "concave"
            nxt = self._blame(self.net.nodes[node_id], prop, steps, wrt)
            if isinstance(nxt, Failure):
                return nxt
            node_id, prop = nxt

    def _blame(self, node: Node, prop: str, steps: list[Step], wrt) -> tuple[int, str] | Failure:
        kids = [steps[a].curvature for a in node.args]
        failing = [i for i, k in enumerate(kids) if not holds(k, prop)]
        op = node.op
        if op == "add":
            return node.args[failing[0]], prop
        if op == "sub":
            return (node.args[0], prop) if not holds(kids[0], prop) else (node.args[1], _mirror(prop))
        if op == "neg":
            return node.args[0], _mirror(prop)
        if op in ("index", "slice"):
            return node.args[0], prop
        if op == "concat":
            return node.args[failing[0]], prop
        if op in ("mul", "matmul", "div"):
            return self._blame_product(node, prop, kids, wrt)
        if op == "scalar":
            return self._blame_scalar(node, prop, kids)
        if op == "reduce":
            return self._blame_reduction(node, prop, kids)
        return Failure(node.id, steps[node.id].rule, f"`{node.label}` is not {prop}")

    def _blame_product(self, node: Node, prop: str, kids, wrt) -> tuple[int, str] | Failure:
        factor_at, g_at = self._constant_factor(node, kids)
        a, b = (self.net.nodes[i] for i in node.args)
        if factor_at is None:
            names = ", ".join(wrt)
            return Failure(node.id, "product rule",
                           f"`{a.label}` and `{b.label}` both depend on {names}: a product of two non-constant "
                           f"factors is not covered by the composition rules",
                           "analyse in fewer variables (fixing one factor), or let the refuter look for a witness")
        factor_node = self.net.nodes[node.args[factor_at]]
        factor = self._factor_range(node, factor_at)
        g = node.args[g_at]
        if factor.nonneg:
            return g, prop
        if factor.nonpos:
            return g, _mirror(prop)
        hint = None
        leaves = [n for n in self._leaves(factor_node.id) if n not in wrt]
        if leaves:
            hint = " or ".join(f"declare `{n} >= 0`" for n in leaves[:3]) + " to fix the sign of the factor"
        return Failure(node.id, "sign rule",
                       f"the constant factor `{factor_node.label}` ranges over {factor} (sign unknown), so "
                       f"`{self.net.nodes[g].label}` must be affine, but it is {kids[g_at]}", hint)

    def _leaves(self, node_id: int) -> list[str]:
        return [self.net.nodes[i].attrs[0] for i in self.net.ancestors(node_id) if self.net.nodes[i].op == "var"]

    def _blame_scalar(self, node: Node, prop: str, kids) -> tuple[int, str] | Failure:
        f, box = self.atom(node), self.box(node)
        arg = self.net.nodes[node.args[0]]
        if box is None:
            return Failure(node.id, "domain", f"the argument `{arg.label}` never lies in the domain of {_called(f)}")
        has = f.convex_on_box(box) if prop == "convex" else f.concave_on_box(box)
        if not has:
            where = f.convex_on if prop == "convex" else f.concave_on
            return Failure(node.id, "curvature of the outer function",
                           f"{_called(f)} is not {prop} on {box}, the range of its argument `{arg.label}`"
                           + _only_on(_called(f), prop, where), _restrict_hint(_called(f), where))
        mono = f.monotonicity_on_box(box)
        g = kids[0]
        if not self._domain_ok(node, f, g):
            return Failure(node.id, "domain", f"`{arg.label}` may leave the domain {f.domain} of {_called(f)}, and the set "
                           f"where it stays inside need not be convex ({arg.label} is {g})")
        if _arg_ok_direction(mono, prop) is not None:
            return node.args[0], _arg_ok_direction(mono, prop)
        if not (g.is_convex or g.is_concave):
            return Failure(node.id, "composition",
                           f"{_called(f)} is {mono} on {box}, so its argument `{arg.label}` must be affine, but it is "
                           f"{g}", "make the argument affine in the variables, or analyse in fewer variables")
        need = "nondecreasing" if holds(g, prop) else "nonincreasing"
        pieces = f.increasing_on if need == "nondecreasing" else f.decreasing_on
        return Failure(node.id, "monotonicity of the outer function",
                       f"{_called(f)} is {mono} on {box}, the range of its argument `{arg.label}` ({g}); the "
                       f"composition needs it {need} there: " + self._derivative_words(f, box, need)
                       + _only_on(_called(f), need, pieces), _restrict_hint(_called(f), pieces), need)

    def _derivative_words(self, f: ScalarAtom, box: Interval, need: str) -> str:
        """f' in words; for user atoms, where on the box its sign is wrong (sympy is loaded for them anyway)."""
        arg = self._arg_name(f)
        words = f"d/du {_called(f)} = {f.derivative}" if f.name == "power" else f"{f.name}'({arg}) = {f.derivative}"
        if f.name in self.net.atom_defs and need == "nondecreasing":
            from .symbolic import explain_monotone

            return explain_monotone(f, box) or words
        return words

    def _arg_name(self, f: ScalarAtom) -> str:
        """The argument's name in the atom's derivative text: the user's own for user atoms."""
        defined = self.net.atom_defs.get(f.name)
        return defined.arg if defined is not None else "u"

    def _blame_reduction(self, node: Node, prop: str, kids) -> tuple[int, str] | Failure:
        rec = REDUCTIONS[node.attrs[0]]
        if not (rec.convex if prop == "convex" else rec.concave):
            return Failure(node.id, "curvature of the outer function", f"{rec.name} is not {prop}")
        for i, (g, m) in enumerate(zip(kids, self.reduction_monotonicity(node))):
            if _arg_ok(g, m, prop):
                continue
            need = _arg_ok_direction(m, prop)
            if need is not None:
                return node.args[i], need
            arg = self.net.nodes[node.args[i]]
            return Failure(node.id, "monotonicity of the outer function",
                           f"{rec.name} is {m} in `{arg.label}` (range {self.ranges[arg.id]}), which is {g}",
                           "make the argument affine, or its entries of one sign")
        return Failure(node.id, "composition", f"{rec.name}: no rule applies")


def _arg_ok(g: Curvature, mono: Monotonicity, prop: str) -> bool:
    """Composition, argument by argument: affine, or ↑ and same curvature, or ↓ and the mirrored one."""
    if g.is_affine or mono is M.CONSTANT:
        return True
    if mono is M.INCREASING:
        return holds(g, prop)
    if mono is M.DECREASING:
        return holds(g, _mirror(prop))
    return False


def _arg_ok_direction(mono: Monotonicity, prop: str) -> str | None:
    """What the argument must be for the composition to have `prop`, when monotonicity allows anything."""
    if mono is M.INCREASING:
        return prop
    if mono is M.DECREASING:
        return _mirror(prop)
    return None


@dataclass(frozen=True)
class _ShapeWords:
    """The outer function's curvature on the box, in words (formatted lazily with the rule)."""

    f: ScalarAtom
    box: Interval

    def __str__(self) -> str:
        convex, concave = self.f.convex_on_box(self.box), self.f.concave_on_box(self.box)
        return "affine" if convex and concave else "convex" if convex else "concave" if concave else "neither"


def _domain_words(f: ScalarAtom) -> str:
    lo, hi = f.domain.lo, f.domain.hi
    left = "-inf" if lo == -L.INF else f"{lo:g}"
    right = "inf" if hi == L.INF else f"{hi:g}"
    return f"{'(' if f.open_at[0] or lo == -L.INF else '['}{left}, {right}{')' if f.open_at[1] or hi == L.INF else ']'}"


@dataclass(frozen=True)
class _ArgWords:
    """Each argument's curvature and the outer function's monotonicity in it (formatted lazily)."""

    pairs: tuple

    def __str__(self) -> str:
        return ", ".join(f"{m} in a {g} argument" for g, m in self.pairs)


def _called(f: ScalarAtom) -> str:
    """The atom as a reader knows it: `u^3` for a power (whose record is named "power"), else its name."""
    return f"u^{f.params[0]:g}" if f.name == "power" else f.name


def _only_on(name: str, what: str, pieces) -> str:
    if not pieces:
        return f"; {name} is {what} on no interval"
    return f"; {name} is {what} only on " + " and ".join(str(p) for p in pieces)


def _restrict_hint(name: str, pieces) -> str | None:
    if not pieces:
        return None
    return f"keep the argument of {name} inside {pieces[0]} (declare a constraint on the variables it depends on)"
