"""Curvature analysis: one pass over the DAG with the composition rules of SPEC section 2 ("Rules").

Ranges are computed once per network (they do not depend on which variables are asked about). Curvature
is computed with respect to a set of variables: every other name is a constant whose range is its declared
constraint. Each op has one rule function (`RULES`), applied once per node: it returns a `Step` holding the
curvature, the node's monotonicity in the variables, and, for each of "convex" and "concave" that does not
hold, the record of why: either the child to blame (and the property it lacks) or a `Failure` with the rule
that failed, the reason and a hint. `why_not` only follows these records down from the claim.

Beyond the composition rules (issue 17), three methods run in the same pass, each on its own sound:
products of similarly monotone factors of known sign (`_product_rule`), and, only at a lowest node the rules
leave unknown, rewriting to a normal form (`rewrite.py`) and interval Hessians (`hessian.py`).
"""
from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from . import lattice as L
from .atoms import REDUCTIONS, ScalarAtom
from .collector import gc_paused
from .graph import Network, Node, const_range
from .lattice import Curvature, Interval, Monotonicity

C = Curvature
M = Monotonicity
PROPERTIES = ("convex", "concave", "affine")
BEYOND = ("product", "rewrite", "hessian")   # the methods past the composition rules (issue 17); () for DCP alone
SEVERAL = "*"          # `Step.deps` of a node that depends on several variables (or on a non-scalar one)
BEYOND_NODES = 400     # the largest subexpression the rewriter and the Hessian method look at
SMALL_IDS = 64         # in a network this small, every unknown scalar node is tried, not only the lowest
BEYOND_TRIES = 40      # unknown nodes they look at, per set of variables


def holds(curvature: Curvature, prop: str) -> bool:
    """Does a proved curvature class establish the property? (Identity tests: this runs several times a node.)"""
    if curvature is C.CONSTANT or curvature is C.AFFINE:
        return True
    return curvature is C.CONVEX if prop == "convex" else curvature is C.CONCAVE if prop == "concave" else False


_MIRROR = {"convex": "concave", "concave": "convex"}


def _mirror(prop: str) -> str:
    return _MIRROR.get(prop, prop)


# the properties among convex and concave that a curvature class does not establish: where a rule records why
LACKS = {c: tuple(p for p in ("convex", "concave") if not holds(c, p)) for c in C}


@dataclass(frozen=True)
class Failure:
    """Where and why a proof stopped: the node, the rule that failed, and a hint when one exists.

    The reason and hint are kept as a template and its arguments and formatted only when read: every node
    of a large network records why its failing properties fail, and most records are never shown.
    """

    node: int
    rule: str
    words: tuple = ("",)                 # template, *args
    hint_words: tuple | None = None
    need: str | None = None     # for an outer function of the wrong monotonicity: the one the rule needed

    @property
    def reason(self) -> str:
        return _fmt(self.words)

    @property
    def hint(self) -> str | None:
        return None if self.hint_words is None else _fmt(self.hint_words)


class _FactorsDependence:
    """The words for a product of two varying factors, naming exactly the variables each factor depends on
    (`wout` depends on wout and `z10` on W0, b0, ...); formed only when a report reads them."""

    SHOWN = 8

    def __init__(self, net: Network, node: Node, wrt):
        self.net, self.node, self.wrt = net, node, wrt

    def _variables(self, node_id: int) -> list[str]:
        used = {self.net.nodes[i].attrs[0] for i in self.net.ancestors(node_id) if self.net.nodes[i].op == "var"}
        names = [v for v in self.net.variables if v in used and v in self.wrt]
        if len(names) > self.SHOWN:
            return names[:self.SHOWN] + [f"… ({len(names)} in all)"]
        return names

    def __str__(self) -> str:
        a, b = (self.net.nodes[i] for i in self.node.args)
        va, vb = self._variables(a.id), self._variables(b.id)
        tail = ": a product of two non-constant factors is not covered by the composition rules"
        if va == vb:
            return f"`{a.label}` and `{b.label}` both depend on {', '.join(va)}{tail}"
        return f"`{a.label}` depends on {', '.join(va)} and `{b.label}` on {', '.join(vb)}{tail}"


def _hint(text: str | None) -> tuple | None:
    return None if text is None else (text,)


def _fmt(words: tuple) -> str:
    return words[0].format(*words[1:]) if len(words) > 1 else words[0]


@dataclass(slots=True)
class Step:
    """The rule applied at one node: the curvature it gives and the rule in words.

    The words are a template and its arguments, formatted only when a report asks. `mono` is the node's
    monotonicity in the variables (entrywise), `deps` the one scalar variable it depends on (None: none,
    SEVERAL: more). `blame` holds, for "convex" and "concave" where they do not hold, the record of why.
    `detail` carries what a method beyond the rules found (a rewrite, a Hessian enclosure) for the certificate.

    A step is never changed once made (steps are shared: `_CONSTANT`, the cached passes). It is not a frozen
    dataclass only because a frozen one's `__init__` costs a fifth of the rule pass over a deep network.
    """

    curvature: Curvature
    template: str
    args: tuple = ()
    mono: Monotonicity = M.NONE
    deps: str | None = SEVERAL
    blame: dict = field(default_factory=dict, compare=False)
    detail: dict | None = field(default=None, compare=False)

    @property
    def rule(self) -> str:
        return self.template.format(*self.args) if self.args else self.template


_CONSTANT = Step(C.CONSTANT, "constant in the variables", mono=M.CONSTANT, deps=None)   # shared: never changed
_FIXED = Step(C.CONSTANT, "fixed (not a variable)", mono=M.CONSTANT, deps=None)


# -- monotonicity in the variables: pure helpers ------------------------------------------------------
def mono_add(a: Monotonicity, b: Monotonicity) -> Monotonicity:
    """Sum: constant + m = m, ↑ + ↑ = ↑, ↓ + ↓ = ↓, otherwise none."""
    if a is M.CONSTANT:
        return b
    if b is M.CONSTANT or a is b:
        return a
    return M.NONE


_MONO_FLIP = {M.INCREASING: M.DECREASING, M.DECREASING: M.INCREASING}


def mono_flip(a: Monotonicity) -> Monotonicity:
    return _MONO_FLIP.get(a, a)


def mono_compose(outer: Monotonicity, inner: Monotonicity) -> Monotonicity:
    """f(g): constant if either is; ↑f keeps g's direction, ↓f flips it."""
    if outer is M.CONSTANT or inner is M.CONSTANT:
        return M.CONSTANT
    if outer is M.INCREASING:
        return inner
    if outer is M.DECREASING:
        return mono_flip(inner)
    return M.NONE


def mono_scale(m: Monotonicity, factor: Interval) -> Monotonicity:
    """c·g with c in `factor` (a value, not necessarily constant): c ≥ 0 keeps, c ≤ 0 flips."""
    if m is M.CONSTANT or (factor.lo == 0 and factor.hi == 0):
        return M.CONSTANT
    if factor.nonneg:
        return m
    if factor.nonpos:
        return mono_flip(m)
    return M.NONE


def mono_product(mf: Monotonicity, rf: Interval, mg: Monotonicity, rg: Interval) -> Monotonicity:
    """f·g: f(b)g(b) - f(a)g(a) = f(b)(g(b) - g(a)) + g(a)(f(b) - f(a)), each term signed by a range."""
    return mono_add(mono_scale(mg, rf), mono_scale(mf, rg))


def _deps_join(a: str | None, b: str | None) -> str | None:
    if a is None:
        return b
    if b is None or a == b:
        return a
    return SEVERAL


def _same_way(a: Monotonicity, b: Monotonicity) -> bool:
    """Similarly ordered: (f(s) - f(t))(g(s) - g(t)) ≥ 0 for a scalar variable."""
    return M.CONSTANT in (a, b) or (a is b and a in (M.INCREASING, M.DECREASING))


def _opposite_way(a: Monotonicity, b: Monotonicity) -> bool:
    return M.CONSTANT in (a, b) or {a, b} == {M.INCREASING, M.DECREASING}


def _sign(r: Interval) -> int:
    return 1 if r.nonneg else -1 if r.nonpos else 0


class Analyzer:
    """The ranges of a network's nodes, and its curvature with respect to any set of variables.

    >>> from dcpnet.graph import load_text
    >>> net = load_text("input x\\ny = relu(x)^2\\n")
    >>> Analyzer(net).curvature("y", ["x"])
    <Curvature.CONVEX: 'convex'>
    """

    def __init__(self, net: Network, beyond: tuple[str, ...] = BEYOND):
        self.net = net
        self.beyond = beyond
        self.beyond_tries = BEYOND_TRIES if self._nodes_beyond() else 0   # a few attempts per set of variables
        self.ranges: list[Interval] = []
        self.atoms: dict[tuple, ScalarAtom] = {}   # by the node's key (`_exact`): ("relu",), ("power", 2.0), ...
        self._steps: dict[frozenset, list[Step]] = {}
        self._conditions: dict[int, str] | None = None   # node → the domain condition it relies on
        self._memo: dict[tuple, object] = {}   # what repeats between nodes, by what it depends on (see the users)
        self._range_bits: list[bytes] = []   # each range's bounds as bytes, the memo's key for it
        with gc_paused():   # a range, a step per node: many small acyclic objects, nothing for the collector
            for node in net.nodes:
                r = self._range(node)
                self.ranges.append(r)
                self._range_bits.append(_bits(r.lo, r.hi))

    # -- ranges ------------------------------------------------------------------------------------
    def atom(self, node: Node) -> ScalarAtom:
        key = _exact(node.attrs)
        found = self.atoms.get(key)
        if found is None:
            found = self.atoms[key] = self.net.scalar_atom(node.attrs)
        return found

    def _range(self, node: Node) -> Interval:
        if not node.args:   # a variable's declared bounds, a literal's enclosure: read, not computed
            return RANGE_RULES[node.op](self, node, ())
        # a range is a pure function of the op, its attributes, the shapes and the argument ranges; the layers
        # of a deep network repeat the same few, so each is computed once. Keys hold the bounds' bit patterns:
        # 0.0 == -0.0, but a bound's sign of zero can show in a result
        nodes, bits = self.net.nodes, self._range_bits
        key = (node.op, _exact(node.attrs), node.shape, *[(nodes[a].shape, bits[a]) for a in node.args])
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = RANGE_RULES[node.op](self, node, [self.ranges[a] for a in node.args])
        return found

    def range(self, name_or_id) -> Interval:
        return self.ranges[self._id(name_or_id)]

    def _id(self, name_or_id) -> int:
        return self.net.names[name_or_id] if isinstance(name_or_id, str) else name_or_id

    # -- curvature ---------------------------------------------------------------------------------
    def steps(self, wrt) -> list[Step]:
        """The rule at every node for the variables `wrt` (computed for all nodes once, then cached)."""
        key = frozenset(wrt)
        if key not in self._steps:
            self.beyond_tries = BEYOND_TRIES if self._nodes_beyond() else 0   # each set of variables gets its own
            steps: list[Step] = []
            with gc_paused():
                for node in self.net.nodes:
                    steps.append(self._step(node, key, steps))
            self._steps[key] = steps
        return self._steps[key]

    def curvature(self, name_or_id, wrt) -> Curvature:
        return self.steps(self.net.resolve_wrt(list(wrt)))[self._id(name_or_id)].curvature

    def monotonicity(self, name_or_id, wrt) -> Monotonicity:
        """Nondecreasing (nonincreasing) in every entry of every variable of `wrt`, as the pass computed it."""
        return self.steps(self.net.resolve_wrt(list(wrt)))[self._id(name_or_id)].mono

    def curvature_once(self, name_or_id, wrt) -> Curvature:
        """The answer of the rules alone, without caching, over the target's ancestors only (for searches over
        many sets: the stronger methods would cost too much there)."""
        key = frozenset(self.net.resolve_wrt(list(wrt)))
        root = self._id(name_or_id)
        steps: dict[int, Step] = {}
        self.beyond_tries = 0
        for i in self.net.ancestors(root):
            steps[i] = self._step(self.net.nodes[i], key, steps)
        return steps[root].curvature

    def _step(self, node: Node, wrt: frozenset, steps) -> Step:
        op = node.op
        if op == "const":
            return _CONSTANT
        if op == "var":   # a leaf, affine or fixed: never one for the methods beyond the rules
            return self._var_rule(node, (), wrt)
        kids = [steps[a] for a in node.args]
        for k in kids:
            if k.curvature is not C.CONSTANT:
                break
        else:
            return _CONSTANT
        step = RULES[op](self, node, kids, wrt)
        if step.curvature is C.UNKNOWN and self.beyond_tries > 0 and (all(k.curvature is not C.UNKNOWN for k in kids)
                                                             or (node.shape == () and node.id < SMALL_IDS)):
            # a lowest node the rules leave unknown (or a small scalar one): only here do the stronger methods run
            better = self._beyond(node, wrt, step)
            if better is not None:
                return better
        return step

    def _nodes_beyond(self) -> bool:
        return "rewrite" in self.beyond or "hessian" in self.beyond

    def _beyond(self, node: Node, wrt: frozenset, step: Step) -> Step | None:
        if self.beyond_tries <= 0 or len(self.net.ancestors(node.id)) > BEYOND_NODES:
            return None
        self.beyond_tries -= 1
        if "rewrite" in self.beyond:
            from .rewrite import prove_by_rewriting

            found = prove_by_rewriting(self, node.id, wrt)
            if found is not None:
                return _with_blame(found, step, node)
        if "hessian" in self.beyond and step.deps is not None:
            from .hessian import prove_by_hessian

            found = prove_by_hessian(self, node.id, wrt)
            if found is not None:
                return _with_blame(found, step, node)
        return None

    # -- the rules, one per op (RULES below) --------------------------------------------------------
    def _var_rule(self, node: Node, kids, wrt) -> Step:
        name = node.attrs[0]
        if name not in wrt:
            return _FIXED
        return Step(C.AFFINE, "variable", mono=M.INCREASING, deps=name if node.size == 1 else SEVERAL)

    def _add_rule(self, node: Node, kids, wrt) -> Step:
        a, b = kids
        curv = L.add_curvature(a.curvature, b.curvature)
        return Step(curv, "sum: {} + {}", (a.curvature, b.curvature), mono_add(a.mono, b.mono),
                    _deps_join(a.deps, b.deps), _sum_blame(node, kids, curv, (1, 1)))

    def _sub_rule(self, node: Node, kids, wrt) -> Step:
        a, b = kids
        curv = L.add_curvature(a.curvature, L.flip(b.curvature))
        return Step(curv, "difference: {} - {}", (a.curvature, b.curvature), mono_add(a.mono, mono_flip(b.mono)),
                    _deps_join(a.deps, b.deps), _sum_blame(node, kids, curv, (1, -1)))

    def _neg_rule(self, node: Node, kids, wrt) -> Step:
        g = kids[0]
        curv = L.flip(g.curvature)
        blame = {p: (node.args[0], _mirror(p)) for p in LACKS[curv]}
        return Step(curv, "negation of {}", (g.curvature,), mono_flip(g.mono), g.deps, blame)

    def _index_rule(self, node: Node, kids, wrt) -> Step:
        g = kids[0]
        blame = {p: (node.args[0], p) for p in LACKS[g.curvature]}
        return Step(g.curvature, "an entry keeps the curvature", (), g.mono, g.deps, blame)   # and a slice

    def _concat_rule(self, node: Node, kids, wrt) -> Step:
        """`concat(u, v, …)`: a vector is convex when every piece is (the join of the pieces)."""
        curv = kids[0].curvature
        mono, deps = kids[0].mono, kids[0].deps
        for k in kids[1:]:
            curv = L.add_curvature(curv, k.curvature) if curv is not C.CONSTANT or k.curvature is not C.CONSTANT \
                else curv
            mono, deps = mono_add(mono, k.mono), _deps_join(deps, k.deps)
        blame = _sum_blame(node, kids, curv, (1,) * len(kids))
        return Step(curv, "concatenation: pieces {}", (", ".join(str(k.curvature) for k in kids),), mono, deps, blame)

    def _product_rule(self, node: Node, kids, wrt) -> Step:
        factor_at, g_at = self._constant_factor(node, kids)
        deps = _deps_join(kids[0].deps, kids[1].deps)
        if factor_at is None:
            return self._two_factors(node, kids, wrt, deps)
        factor = self._factor_range(node, factor_at)
        g = kids[g_at]
        curv = L.scale_curvature(g.curvature, factor)
        sign = "≥ 0" if factor.nonneg else "≤ 0" if factor.nonpos else "of either sign"
        blame = {}
        for p in LACKS[curv]:
            if factor.nonneg or factor.nonpos:
                blame[p] = (node.args[g_at], p if factor.nonneg else _mirror(p))
            else:
                blame[p] = self._sign_failure(node, factor_at, g_at, factor, g.curvature, wrt)
        return Step(curv, "scaling by a constant {} ({}): {} → {}", (sign, factor, g.curvature, curv),
                    mono_scale(g.mono, factor), deps, blame)

    def _sign_failure(self, node: Node, factor_at: int, g_at: int, factor: Interval, g: Curvature,
                      wrt) -> Failure:
        factor_node = self.net.nodes[node.args[factor_at]]
        hint = None
        leaves = [n for n in self._leaves(factor_node.id) if n not in wrt]
        if leaves:
            hint = (" or ".join(f"declare `{n} >= 0`" for n in leaves[:3]) + " to fix the sign of the factor",)
        return Failure(node.id, "sign rule",
                       ("the constant factor `{}` ranges over {} (sign unknown), so `{}` must be affine, but it is {}",
                        factor_node.label, factor, self.net.nodes[node.args[g_at]].label, g), hint)

    def _two_factors(self, node: Node, kids, wrt, deps) -> Step:
        """f·g with both varying: the product rule of issue 17 (Method 3) where it applies.

        For f, g ≥ 0 convex and similarly ordered ((f(s) - f(t))(g(s) - g(t)) ≥ 0, as for two functions of one
        scalar variable that are both ↑ or both ↓), f·g is convex: expanding f(m)g(m) ≤ (θf(s) + (1-θ)f(t))·
        (θg(s) + (1-θ)g(t)) leaves θ(1-θ)(f(s) - f(t))(g(s) - g(t)) to subtract. Concave f, g ≥ 0 ordered
        oppositely give a concave product. A factor of known sign ≤ 0 is negated into that case first.
        """
        rf, rg = (self.ranges[a] for a in node.args)
        f, g = kids
        mono = mono_product(f.mono, rf, g.mono, rg) if node.op in ("mul", "matmul") else M.NONE   # a sum of products
        sf, sg = _sign(rf), _sign(rg)
        if node.op == "mul" and deps not in (None, SEVERAL) and sf and sg and "product" in self.beyond:
            cf = f.curvature if sf > 0 else L.flip(f.curvature)
            cg = g.curvature if sg > 0 else L.flip(g.curvature)
            mf = f.mono if sf > 0 else mono_flip(f.mono)
            mg = g.mono if sg > 0 else mono_flip(g.mono)
            convex = cf.is_convex and cg.is_convex and _same_way(mf, mg)
            concave = cf.is_concave and cg.is_concave and _opposite_way(mf, mg)
            curv = L.curvature_of(convex, concave)
            if sf * sg < 0:
                curv = L.flip(curv)
            if curv is not C.UNKNOWN:
                words = (("product rule: factors of constant sign ({}, {}), {} and {} ({} and {}) in the one variable "
                         "{}: the product of nonnegative {} factors ordered {} is {}"),
                         rf, rg, f.curvature, g.curvature, f.mono, g.mono, deps,
                         "convex" if convex else "concave", "alike" if convex else "oppositely",
                         "convex" if convex else "concave")
                blame = {p: self._product_failure(node, wrt) for p in LACKS[curv]}
                return Step(curv, words[0], words[1:], mono, deps, blame)
        blame = {p: self._product_failure(node, wrt) for p in ("convex", "concave")}
        return Step(C.UNKNOWN, "product of two factors that both depend on the variables: not covered", (),
                    mono, deps, blame)

    def _product_failure(self, node: Node, wrt) -> Failure:
        return Failure(node.id, "product rule", ("{}", _FactorsDependence(self.net, node, wrt)),
                       ("analyse in fewer variables (fixing one factor), or let the refuter look for a witness",))

    def _factor_range(self, node: Node, factor_at: int) -> Interval:
        """The constant factor's range; for a divisor, 1/c has c's sign (c = 0 is outside the domain)."""
        r = self.ranges[node.args[factor_at]]
        if node.op != "div":
            return r
        return L.NONNEG if r.nonneg else L.NONPOS if r.nonpos else L.reciprocal(r)

    @staticmethod
    def _constant_factor(node: Node, kids) -> tuple[int | None, int]:
        """(index of the constant factor, index of the other), or (None, 0) when both vary."""
        if node.op == "div":
            return (1, 0) if kids[1].curvature is C.CONSTANT else (None, 0)
        if kids[0].curvature is C.CONSTANT:
            return 0, 1
        if kids[1].curvature is C.CONSTANT:
            return 1, 0
        return None, 0

    def _scalar_rule(self, node: Node, kids, wrt) -> Step:
        f = self.atom(node)
        on = self._on_box(node)
        box = on.box
        g = kids[0]
        if box is None:  # defined nowhere: every claim holds vacuously (the range is a sound outer bound)
            return Step(C.CONSTANT, "{} is defined nowhere: its argument never lies in its domain {}",
                        (_called(f), f.domain), M.CONSTANT, None)
        mono = on.mono
        if mono is M.CONSTANT:
            return Step(C.CONSTANT, "{} is constant on {}", (_called(f), box), M.CONSTANT, None)
        domain_ok = on.defined or self._domain_ok(node, f, g.curvature)
        curv = L.curvature_of(on.convex and domain_ok and _arg_ok(g.curvature, mono, "convex"),
                              on.concave and domain_ok and _arg_ok(g.curvature, mono, "concave"))
        blame = {p: self._scalar_blame(node, p, f, on, g.curvature, domain_ok) for p in LACKS[curv]}
        return Step(curv, "composition: {} {}, {} on {}; argument {}", (_called(f), on.shape, mono, box, g.curvature),
                    mono_compose(mono, g.mono), g.deps, blame)

    def _scalar_blame(self, node: Node, prop: str, f: ScalarAtom, on: _OnBox, g: Curvature, domain_ok: bool):
        arg = self.net.nodes[node.args[0]]
        box, mono = on.box, on.mono
        if not (on.convex if prop == "convex" else on.concave):
            return Failure(node.id, "curvature of the outer function",
                           ("{} is not {} on {}, the range of its argument `{}`{}", _called(f), prop, box, arg.label,
                            self._only_on(node, f, prop)), self._restrict_hint(node, f, prop))
        if not domain_ok:
            return Failure(node.id, "domain", (("`{}` may leave the domain {} of {}, and the set where it stays inside "
                                               "need not be convex ({} is {})"), arg.label, f.domain, _called(f),
                                               arg.label, g))
        direction = _arg_ok_direction(mono, prop)
        if direction is not None:
            return node.args[0], direction
        if not (g.is_convex or g.is_concave):
            return Failure(node.id, "composition",
                           ("{} is {} on {}, so its argument `{}` must be affine, but it is {}", _called(f), mono, box,
                            arg.label, g),
                           ("make the argument affine in the variables, or analyse in fewer variables",))
        need = "nondecreasing" if holds(g, prop) else "nonincreasing"
        return Failure(node.id, "monotonicity of the outer function",
                       ("{} is {} on {}, the range of its argument `{}` ({}); the composition needs it {} there: {}{}",
                        _called(f), mono, box, arg.label, g, need, _Text(self._derivative_words, f, box, need),
                        self._only_on(node, f, need)), self._restrict_hint(node, f, need), need)

    def _on_box(self, node: Node) -> _OnBox:
        """The atom's facts on its argument's range, read once per atom and range: the layers of a deep network
        apply the same atoms to the same few ranges."""
        key = ("on box", _exact(node.attrs), self._range_bits[node.args[0]])
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = _OnBox.of(self.atom(node), self.ranges[node.args[0]])
        return found

    def _only_on(self, node: Node, f: ScalarAtom, prop: str) -> _Text:
        """Where the atom has `prop` (or is monotone as `prop` says), in words formed when read; one per atom."""
        key = ("only on", _exact(node.attrs), prop)
        if key not in self._memo:
            self._memo[key] = _Text(_only_on, _called(f), prop, _pieces(f, prop), f.notes)
        return self._memo[key]

    def _restrict_hint(self, node: Node, f: ScalarAtom, prop: str) -> tuple | None:
        key = ("hint", _exact(node.attrs), prop)
        if key not in self._memo:
            self._memo[key] = _hint(_restrict_hint(_called(f), _pieces(f, prop)))
        return self._memo[key]

    def box(self, node: Node) -> Interval | None:
        """The argument's range met with the atom's domain: where the atom's facts are read."""
        return self._on_box(node).box

    def _domain_ok(self, node: Node, f: ScalarAtom, g: Curvature) -> bool:
        """Where the argument may leave the domain, the set where it stays inside must be convex:
        {g ≥ c} is convex for concave g, {g ≤ c} for convex g (extended-value composition)."""
        r = self.ranges[node.args[0]]
        if f.defined_on(r) or g.is_affine:
            return True
        below = r.lo < f.domain.lo or (f.open_at[0] and r.lo <= f.domain.lo)
        above = r.hi > f.domain.hi or (f.open_at[1] and r.hi >= f.domain.hi)
        return (not below or g.is_concave) and (not above or g.is_convex)

    def _reduce_rule(self, node: Node, kids, wrt) -> Step:
        rec = REDUCTIONS[node.attrs[0]]
        monos = self.reduction_monotonicity(node)
        curvs = [k.curvature for k in kids]
        ok = {p: (rec.convex if p == "convex" else rec.concave) and all(_arg_ok(g, m, p) for g, m in zip(curvs, monos))
              for p in ("convex", "concave")}
        curv = L.curvature_of(ok["convex"], ok["concave"])
        shape = "affine" if rec.convex and rec.concave else "convex" if rec.convex else "concave"
        mono, deps = M.CONSTANT, None
        for k, m in zip(kids, monos):
            mono, deps = mono_add(mono, mono_compose(m, k.mono)), _deps_join(deps, k.deps)
        blame = {p: self._reduction_blame(node, p, rec, curvs, monos) for p in ("convex", "concave") if not ok[p]}
        return Step(curv, "composition: {} {}; {}", (rec.name, shape, _ArgWords(tuple(zip(curvs, monos)))),
                    mono, deps, blame)

    def _reduction_blame(self, node: Node, prop: str, rec, curvs, monos):
        if not (rec.convex if prop == "convex" else rec.concave):
            return Failure(node.id, "curvature of the outer function", ("{} is not {}", rec.name, prop))
        for i, (g, m) in enumerate(zip(curvs, monos)):
            if _arg_ok(g, m, prop):
                continue
            need = _arg_ok_direction(m, prop)
            if need is not None:
                return node.args[i], need
            arg = self.net.nodes[node.args[i]]
            return Failure(node.id, "monotonicity of the outer function",
                           ("{} is {} in `{}` (range {}), which is {}", rec.name, m, arg.label, self.ranges[arg.id], g),
                           ("make the argument affine, or its entries of one sign",))
        return Failure(node.id, "composition", ("{}: no rule applies", rec.name))

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

    def _leaves(self, node_id: int) -> list[str]:
        return [self.net.nodes[i].attrs[0] for i in self.net.ancestors(node_id) if self.net.nodes[i].op == "var"]

    # -- implicit domains ---------------------------------------------------------------------------
    def conditions(self, root) -> list[str]:
        """The domain conditions `root` relies on that its ranges do not already guarantee, in words.

        The analysis reads every claim on the set where these hold (SPEC: "where the expression is defined").
        """
        if self._conditions is None:   # the nodes that carry a condition, once: most networks have none
            self._conditions = {node.id: text for node in self.net.nodes if (text := self._condition(node))}
        if not self._conditions:
            return []
        out = []
        for i in self.net.ancestors(self._id(root)):
            text = self._conditions.get(i)
            if text and text not in out:
                out.append(text)
        return out

    def _condition(self, node: Node) -> str | None:
        if node.op == "scalar":
            if self._on_box(node).defined:
                return None
            f = self.atom(node)
            arg = self.net.nodes[node.args[0]].label
            return f"{_called(f)} needs `{arg}` in {_domain_words(f)}"
        if node.op == "div":
            r = self.ranges[node.args[1]]
            return None if r.lo > 0 or r.hi < 0 else f"`{self.net.nodes[node.args[1]].label}` ≠ 0 (a divisor)"
        if node.op == "reduce" and node.attrs[0] == "quad_over_lin":
            r = self.ranges[node.args[1]]
            return None if r.lo > 0 else f"quad_over_lin needs `{self.net.nodes[node.args[1]].label}` > 0"
        return None

    # -- explaining a failure: reading the records ------------------------------------------------------
    def why_not(self, root, prop: str, wrt) -> Failure:
        """Follow the recorded blame down from `root` to the lowest node where the rules could not give `prop`."""
        steps = self.steps(self.net.resolve_wrt(list(wrt)))
        node_id = self._id(root)
        while True:
            step = steps[node_id]
            if prop == "affine":
                prop = "convex" if not step.curvature.is_convex else "concave"
            found = step.blame.get(prop)
            if found is None:   # only a rule that gave no record: say what the node is
                node = self.net.nodes[node_id]
                return Failure(node_id, step.rule, ("`{}` is not {}", node.label, prop))
            if isinstance(found, Failure):
                return found
            node_id, prop = found

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


def _sum_blame(node: Node, kids, curv: Curvature, signs: tuple) -> dict:
    """For a signed sum, each failing property is blamed on the first term lacking it (mirrored when negated)."""
    blame = {}
    for p in LACKS[curv]:
        for a, k, s in zip(node.args, kids, signs):
            need = p if s > 0 else _mirror(p)
            if not holds(k.curvature, need):
                blame[p] = (a, need)
                break
    return blame


def _with_blame(found: Step, rules_step: Step, node: Node) -> Step:
    """A step from a method beyond the rules; what it leaves unproved is blamed where the rules stopped."""
    blame = {p: rules_step.blame.get(p) or Failure(node.id, found.rule, ("`{}` is not {}", node.label, p))
             for p in LACKS[found.curvature]}
    return Step(found.curvature, found.template, found.args, rules_step.mono, rules_step.deps, blame, found.detail)


@dataclass(frozen=True)
class _Text:
    """Words computed when the reason is read, not when the rule is applied."""

    fn: Callable
    args: tuple = ()

    def __init__(self, fn: Callable, *args):
        object.__setattr__(self, "fn", fn)
        object.__setattr__(self, "args", args)

    def __str__(self) -> str:
        return str(self.fn(*self.args))


_bits = struct.Struct("2d").pack   # an interval's two bounds as bytes: equal exactly when the floats are identical
_float_bits = struct.Struct("d").pack


def _exact(attrs: tuple) -> tuple:
    """A node's attributes as a memo key: a float by its bits, as == takes -0.0 for 0.0 (and 2 for 2.0), whose
    words differ (`u^-0`)."""
    for a in attrs:
        if a.__class__ is float:
            return tuple(_float_bits(a) if a.__class__ is float else a for a in attrs)
    return attrs


def _matmul_range(an: Analyzer, node: Node, r: list[Interval]) -> Interval:
    return L.scale(L.mul(r[0], r[1]), an.net.nodes[node.args[1]].shape[0])


def _reduce_range(an: Analyzer, node: Node, r: list[Interval]) -> Interval:
    return REDUCTIONS[node.attrs[0]].image(r, [an.net.nodes[a].size for a in node.args])


def _concat_range(an: Analyzer, node: Node, r: list[Interval]) -> Interval:
    """One interval for all entries: the hull of the pieces'."""
    out = r[0]
    for x in r[1:]:
        out = out.hull(x)
    return out


RANGE_RULES: dict[str, Callable] = {
    "var": lambda an, node, r: an.net.variables[node.attrs[0]].bounds,
    "const": lambda an, node, r: const_range(node),   # the literal as written, rounded outward
    "add": lambda an, node, r: L.add(r[0], r[1]),
    "sub": lambda an, node, r: L.sub(r[0], r[1]),
    "mul": lambda an, node, r: L.mul(r[0], r[1]),
    "div": lambda an, node, r: L.div(r[0], r[1]),
    "neg": lambda an, node, r: L.neg(r[0]),
    "matmul": _matmul_range,
    "index": lambda an, node, r: r[0],
    "slice": lambda an, node, r: r[0],
    "scalar": lambda an, node, r: an.atom(node).image(r[0]),
    "reduce": _reduce_range,
    "concat": _concat_range,
}

RULES: dict[str, Callable] = {
    "var": Analyzer._var_rule,
    "add": Analyzer._add_rule,
    "sub": Analyzer._sub_rule,
    "neg": Analyzer._neg_rule,
    "index": Analyzer._index_rule,
    "slice": Analyzer._index_rule,
    "mul": Analyzer._product_rule,
    "matmul": Analyzer._product_rule,
    "div": Analyzer._product_rule,
    "scalar": Analyzer._scalar_rule,
    "reduce": Analyzer._reduce_rule,
    "concat": Analyzer._concat_rule,
}


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
class _OnBox:
    """An atom's facts on one argument range r: the box where they are read (r met with the domain; None
    where the two do not meet), whether r lies in the domain, and what the atom's table says on the box."""

    box: Interval | None
    defined: bool
    mono: Monotonicity = M.CONSTANT
    convex: bool = False
    concave: bool = False
    shape: _ShapeWords | None = None   # the curvature on the box, in words

    @staticmethod
    def of(f: ScalarAtom, r: Interval) -> _OnBox:
        box = r.meet(f.domain)
        if box is None:
            return _OnBox(None, f.defined_on(r))
        return _OnBox(box, f.defined_on(r), f.monotonicity_on_box(box), f.convex_on_box(box), f.concave_on_box(box),
                      _ShapeWords(f, box))


def _pieces(f: ScalarAtom, prop: str):
    """Where the atom is `prop`: convex, concave, nondecreasing or nonincreasing."""
    return {"convex": f.convex_on, "concave": f.concave_on, "nondecreasing": f.increasing_on,
            "nonincreasing": f.decreasing_on}[prop]


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


def _only_on(name: str, what: str, pieces, notes: tuple = ()) -> str:
    why = "".join(f" ({note})" for note in notes)   # a user atom's derivation cut short by a limit says so
    if not pieces:
        return f"; {name} is {what} on no interval{why}"
    return f"; {name} is {what} only on " + " and ".join(str(p) for p in pieces) + why


def _restrict_hint(name: str, pieces) -> str | None:
    if not pieces:
        return None
    return f"keep the argument of {name} inside {pieces[0]} (declare a constraint on the variables it depends on)"
