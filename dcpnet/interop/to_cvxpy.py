"""An output proved convex, as a CVXPY expression of the free inputs: optimising over a certified network.

`to_cvxpy(net, output, params, fixed)` returns `(expr, variables, constraints)`: `variables` maps each input
not in `fixed` to a `cvxpy.Variable`, `constraints` holds their declared domains, and
`cvxpy.Problem(cvxpy.Minimize(expr), constraints).is_dcp()` holds. dcpnet decides first: the output must be
proved convex in the free inputs (`Verifier.verify`), or the export is refused with the verdict's reason.

How the proof carries over. The params are numbers (or `cvxpy.Parameter`s, below), so a sign-constrained
weight is a constant matrix whose entries CVXPY reads as nonnegative, and `relu(W @ z)` with W >= 0 is DCP as
dcpnet proved it. Each node is written with a CVXPY atom (relu → pos, softplus → logistic, huber → huber with
M = 1, ...); CVXPY's own canonicalisation then adds the epigraph variables and cone constraints of those atoms
(t >= u, t >= 0 for pos; the exponential cone for logistic and log_sum_exp; ...), so none are needed here.
Where dcpnet's rule used a node's *range* rather than its sign, the node is written as what it is on that
range: relu(u) with u >= 0 is u, abs(u) with u <= 0 is -u, huber on [-1, 1] is u², an odd power on u <= 0 is
-(-u)^p, an atom constant on the range is that number; and an argument that dcpnet knows is >= 0 but CVXPY
cannot see is wrapped in pos(·), which is the identity there. Subexpressions that depend on no variable are
computed in NumPy first, so CVXPY sees the signs of their values (b - 1 for b in [2, 3] is positive).
elu across 0 has no CVXPY atom but an exact exponential-cone form, with two auxiliary variables per entry
(`_elu_epigraph`): the expression's value is then the minimum over them, which a solve attains. Atoms with
no CVXPY form (sigmoid, tanh, gelu, silu; selu across 0) are refused by name when a variable reaches them;
on numbers they are just evaluated.

The code is generated: `cvxpy_source` writes one function, `objective(params, fixed)`, with one line per
node from the tables below; `to_cvxpy` runs it, and `dcpnet export --to cvxpy` writes it to a file that
needs only numpy and cvxpy.

DPP (disciplined parametrised programming: CVXPY compiles once, then re-solves fast for new parameter values).
Any param or fixed input may be given as a `cvxpy.Parameter` of its declared shape; one with a sign
constraint must carry the attribute (`nonneg=True` for `>= 0`). The problem is DPP when every product has a
parameter-free factor: in an ICNN
    z1 = relu(W0 @ x + b0);  z2 = relu(Z1 @ z1 + U1 @ x + b1);  f = a @ z2 + c
the biases b0, b1, c, the weights acting on x alone (W0, U1) and fixed inputs entering the same way may be
Parameters; Z1 and a may not (Z1 @ z1 multiplies a parameter by an expression that contains parameters), so
an all-parameter ICNN is not DPP. Nonlinear functions of parameters alone (exp(b) * x) and divisions by a
parameter are not DPP either. `problem.is_dpp()` tells.

>>> import numpy as np, cvxpy as cp
>>> from dcpnet.graph import load_text
>>> net = load_text("input x[2] in [-1, 1]\\nparam W[3, 2], w[3] >= 0\\nf = w @ relu(W @ x) + sum_squares(x)\\n")
>>> expr, variables, constraints = to_cvxpy(net, "f", {"W": np.ones((3, 2)), "w": np.ones(3)})
>>> problem = cp.Problem(cp.Minimize(expr), constraints)
>>> problem.is_dcp(), list(variables), round(float(problem.solve(solver="CLARABEL")), 6)
(True, ['x'], 0.0)
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import DcpnetError, Diagnostic
from ..graph import Network, Node
from ..lattice import Curvature, Interval, Monotonicity
from ._params import as_array, check_value, checked_params, const_values
from .to_torch import st_walk

# -- the tables ---------------------------------------------------------------------------------------
# NumPy, for subexpressions that depend on no variable (on the values of the params and fixed inputs)
NUMPY_ATOMS = {
    "relu": "np.maximum({u}, 0.0)", "abs": "np.abs({u})", "square": "np.square({u})", "sqrt": "np.sqrt({u})",
    "exp": "np.exp({u})", "log": "np.log({u})", "softplus": "np.logaddexp(0.0, {u})",
    "sigmoid": "_sigmoid({u})", "tanh": "np.tanh({u})", "elu": "_elu({u})", "selu": "_SELU_L * _elu({u}, _SELU_A)",
    "gelu": "{u} * 0.5 * _erfc(-{u} / math.sqrt(2.0))", "silu": "{u} * _sigmoid({u})",
    "inv_pos": "1.0 / {u}", "entr": "_entr({u})", "huber": "_huber({u})",
    "leaky_relu": "np.where({u} > 0, {u}, {a} * {u})", "power": "np.power({u}, {a})",
}
NUMPY_REDUCTIONS = {
    "sum": "np.sum({x})", "mean": "np.mean({x})", "max": "np.max({x})", "min": "np.min({x})",
    "log_sum_exp": "np.logaddexp.reduce(np.ravel({x}))", "norm1": "np.sum(np.abs({x}))",
    "norm2": "np.linalg.norm(np.ravel({x}))", "norm_inf": "np.max(np.abs({x}))", "sum_squares": "np.sum(np.square({x}))",
    "quad_over_lin": "np.sum(np.square({x})) / {v}", "maximum": "_fold(np.maximum, {args})",
    "minimum": "_fold(np.minimum, {args})",
}
# CVXPY, for subexpressions of variables or Parameters; None: no CVXPY form (refused by name)
CVXPY_ATOMS = {
    "relu": "cp.pos({u})", "abs": "cp.abs({u})", "square": "cp.square({u})", "sqrt": "cp.sqrt({u})",
    "exp": "cp.exp({u})", "log": "cp.log({u})", "softplus": "cp.logistic({u})", "inv_pos": "cp.inv_pos({u})",
    "entr": "cp.entr({u})", "huber": "cp.huber({u}, 1.0)", "power": "cp.power({u}, {a})",
    "elu": "_elu_epigraph({u}, constraints)",
    "sigmoid": None, "tanh": None, "selu": None, "gelu": None, "silu": None, "leaky_relu": None,
}
CVXPY_REDUCTIONS = {
    "sum": "cp.sum({x})", "mean": "cp.sum({x}) / {n}", "max": "cp.max({x})", "min": "cp.min({x})",
    "log_sum_exp": "cp.log_sum_exp({x})", "norm1": "cp.norm1({x})", "norm2": "cp.norm({x}, 2)",
    "norm_inf": "cp.norm_inf({x})", "sum_squares": "cp.sum_squares({x})", "quad_over_lin": "cp.quad_over_lin({x}, {v})",
    "maximum": "cp.maximum({args})", "minimum": "cp.minimum({args})",
}
# Pieces on which an atom is one simple function: (lo, hi, template); the first piece holding the range wins
PIECES = {
    "relu": [(0.0, math.inf, "{u}")],
    "abs": [(0.0, math.inf, "{u}"), (-math.inf, 0.0, "-{u}")],
    "huber": [(-1.0, 1.0, "cp.square({u})"), (1.0, math.inf, "2.0 * {u} - 1.0"), (-math.inf, -1.0, "-2.0 * {u} - 1.0")],
    "elu": [(0.0, math.inf, "{u}"), (-math.inf, 0.0, "cp.exp({u}) - 1.0")],
    "selu": [(0.0, math.inf, "_SELU_L * {u}"), (-math.inf, 0.0, "_SELU_L * _SELU_A * (cp.exp({u}) - 1.0)")],
    "leaky_relu": [(0.0, math.inf, "{u}"), (-math.inf, 0.0, "{a} * {u}")],
}
# Atoms whose CVXPY monotonicity is read off the argument's sign (so a sign dcpnet knows must be made visible)
SIGN_MONOTONE = {"square", "power", "abs", "huber", "norm1", "norm2", "norm_inf", "sum_squares", "quad_over_lin"}

_PRELUDE = '''\
import functools
import math

import cvxpy as cp
import numpy as np

_SELU_L, _SELU_A = 1.0507009873554805, 1.6732632423543772
_erfc = np.vectorize(math.erfc, otypes=[float])


def _sigmoid(u):
    e = np.exp(-np.abs(u))
    return np.where(u >= 0, 1 / (1 + e), e / (1 + e))


def _elu(u, alpha=1.0):
    return np.where(u > 0, u, alpha * np.expm1(np.minimum(u, 0)))


def _entr(u):
    return np.where(u > 0, -u * np.log(np.where(u > 0, u, 1.0)), np.where(u == 0, 0.0, np.nan))


def _huber(u):
    c = np.clip(u, -1.0, 1.0)
    return c * c + 2 * (np.abs(u) - np.abs(c))


def _elu_epigraph(u, constraints):
    """elu(u) as the least value of exp(v) - 1 + s - v over s >= u, v <= min(s, 0): an exact exponential-cone
    form (the minimum is at s = u, v = min(u, 0)). It stands for elu(u) where the objective is nondecreasing in
    it, as it is wherever a convex atom sits in a proved-convex output, so minimising the objective attains it."""
    s, v = cp.Variable(u.shape), cp.Variable(u.shape)
    constraints += [u <= s, v <= s, v <= 0]
    return cp.exp(v) - 1.0 + s - v


def _entries(e):
    """An expression or array as a vector of its entries (a scalar as one), for concat."""
    if isinstance(e, cp.Expression):
        return cp.reshape(e, (max(e.size, 1),), order="C")
    return np.ravel(np.asarray(e, dtype=np.float64))


def _fold(f, *args):
    return functools.reduce(f, args)


def _flat(e):
    """All entries of an expression as a vector (C order, as dcpnet reads a matrix)."""
    return cp.vec(e, order="C") if len(e.shape) > 1 else e


def _times(a, b):
    """a * b in CVXPY: scalar scaling, or elementwise."""
    return a * b if not np.shape(a) or not np.shape(b) else cp.multiply(a, b)


def _expression(value):
    """A CVXPY expression even for an output that depends on no variable."""
    return value if isinstance(value, cp.Expression) else cp.Constant(value)


def _array(name, value, shape, lo, hi):
    """A number-valued param or fixed input, checked against its declaration."""
    if isinstance(value, cp.Expression):
        return value
    value = np.array(value, dtype=np.float64)
    if value.shape != shape:
        raise ValueError(f"`{name}` has shape {value.shape}; expected {shape}")
    if not np.all(np.isfinite(value)) or (value.size and (value.min() < lo or value.max() > hi)):
        raise ValueError(f"`{name}` must be finite and inside its declared set [{lo}, {hi}]")
    return value
'''


class CvxpyRefused(DcpnetError):
    """The output cannot be handed to CVXPY: not proved convex, or an atom on its path has no CVXPY form."""


# -- generating the source --------------------------------------------------------------------------------
def cvxpy_source(net: Network, output: str, fixed: list[str] = (), parametric: list[str] = (),
                 check: bool = True) -> str:
    """The source of a module defining `objective(params, fixed=None)` → (expr, variables, constraints) and
    `problem(params, fixed=None)` → (cvxpy.Problem minimising `output`, variables).

    The inputs in `fixed` are given values at call time; `parametric` names the params and fixed inputs that
    will be `cvxpy.Parameter`s (written in CVXPY rather than NumPy). With `check`, a refusal is raised here
    when dcpnet does not prove `output` convex in the other inputs.
    """
    gen = _Objective(net, output, list(fixed), set(parametric))
    if check:
        gen.require_proof()
    body = gen.run()
    return (f'"""Generated by dcpnet from {net.source.file}: `{output}` as a CVXPY problem over '
            f'{", ".join(gen.free) or "no variables"} (needs numpy and cvxpy only).\n\n'
            f'    prob, variables = problem(params, fixed)   # params: name -> array, e.g. numpy.load(PARAMS.npz)\n'
            f'    prob.solve(); variables["{(gen.free or ["x"])[0]}"].value\n"""\n'
            + _PRELUDE + gen.atom_source() + f'''

FREE = {tuple(gen.free)!r}
FIXED = {tuple(gen.fixed)!r}


def objective(params, fixed=None):
    """(expr, variables, constraints): `{output}` in the free inputs, its CVXPY variables, their domains."""
    fixed = {{}} if fixed is None else fixed
{body}


def problem(params, fixed=None):
    """cvxpy.Problem(Minimize({output}), domains), and the variables."""
    expr, variables, constraints = objective(params, fixed)
    return cp.Problem(cp.Minimize(expr), constraints), variables
''')


def _num(value: float) -> str:
    text = repr(float(value))
    if text in ("inf", "-inf"):
        return "math.inf" if text == "inf" else "-math.inf"
    return f"({text})" if text.startswith("-") else text


class _Objective:
    def __init__(self, net: Network, output: str, fixed: list[str], parametric: set[str]):
        from ..verify import Verifier

        if output not in net.names:
            raise _refuse(net, f"unknown output `{output}`", None)
        for name in fixed:
            if name not in net.variables or net.variables[name].kind != "input":
                raise _refuse(net, f"`{name}` in fixed is not an input of the network", None)
        self.net, self.output = net, output
        self.root = net.names[output]
        self.fixed = fixed
        self.free = [n for n in net.inputs if n not in fixed]
        self.parametric = parametric
        self.verifier = Verifier(net, budget=1.0, beyond=())   # the rules alone: the forms CVXPY accepts
        self.analyzer = self.verifier.analyzer
        self.steps = self.analyzer.steps(frozenset(self.free))
        self.mode: dict[int, str] = {}            # "num", "par" (depends on a Parameter) or "var"
        self.atoms: list[str] = []

    def require_proof(self) -> None:
        from ..lattice import Verdict

        result = self.verifier.verify(self.output, self.free, want=("convex",))
        if result.convex.verdict is not Verdict.PROVED:
            node = self.net.nodes[self.root]
            raise _refuse(self.net, f"`{self.output}` is not proved convex in {', '.join(self.free) or 'nothing'} "
                          f"({result.convex.verdict.value}): {result.convex.reason}{self._fix_hint()}", node)

    def _fix_hint(self) -> str:
        """Which free inputs alone already stop the proof: the ones to hold fixed, when there are others."""
        alone = [v for v in self.free if not self.analyzer.curvature(self.output, [v]).is_convex]
        if not alone or len(alone) == len(self.free):
            return ""
        names = ", ".join(f"`{v}`" for v in alone)
        them = "it" if len(alone) == 1 else "them"
        return f"; hint: it is not proved convex in {names} alone: hold {them} fixed (`fixed=` of to_cvxpy, " \
               f"`--fixed` of dcpnet export)"

    # -- the body -----------------------------------------------------------------------------------
    def run(self) -> str:
        net = self.net
        lines = ["variables, constraints = {}, []"]
        for name in self.free:
            lines += self._variable(net.variables[name])
        for name in net.params:
            var = net.variables[name]
            lines.append(f"_p_{name} = _array({name!r}, params[{name!r}], {var.shape!r}, {_num(var.bounds.lo)}, "
                         f"{_num(var.bounds.hi)})")
        for name in net.consts:
            var = net.variables[name]
            lines.append(f"_c_{name} = _array({name!r}, params[{name!r}], {var.shape!r}, {_num(var.bounds.lo)}, "
                         f"{_num(var.bounds.hi)})")
        for name in self.fixed:
            var = net.variables[name]
            lines.append(f"_f_{name} = _array({name!r}, fixed[{name!r}], {var.shape!r}, {_num(var.bounds.lo)}, "
                         f"{_num(var.bounds.hi)})")
        for nid in net.ancestors(self.root):
            node = net.nodes[nid]
            self.mode[nid] = self._mode(node)
            if node.op not in ("var", "const"):
                lines.append(f"_v{nid} = {self.expression(node)}  # {node.text}")
        lines.append(f"return _expression({self.ref(self.root)}), variables, constraints")
        return "\n".join("    " + ln for ln in lines)

    def _variable(self, var) -> list[str]:
        lo, hi = var.bounds.lo, var.bounds.hi
        sign = ", nonneg=True" if lo >= 0 and hi > 0 else ", nonpos=True" if hi <= 0 and lo < 0 else ""
        out = [f"_x_{var.name} = variables[{var.name!r}] = cp.Variable({var.shape!r}, name={var.name!r}{sign})"]
        if lo > -math.inf:
            out.append(f"constraints.append(_x_{var.name} >= {_num(lo)})")
        if hi < math.inf:
            out.append(f"constraints.append(_x_{var.name} <= {_num(hi)})")
        return out

    def _mode(self, node: Node) -> str:
        if node.op == "var":
            name = node.attrs[0]
            return "var" if name in self.free else "par" if name in self.parametric else "num"
        modes = {self.mode[a] for a in node.args}
        return "var" if "var" in modes else "par" if "par" in modes else "num"

    def ref(self, nid: int) -> str:
        node = self.net.nodes[nid]
        if node.op == "var":
            name = node.attrs[0]
            kind = self.net.variables[name].kind
            prefix = "_x_" if name in self.free else {"param": "_p_", "const": "_c_"}.get(kind, "_f_")
            return prefix + name
        if node.op == "const":
            return _num(node.attrs[0])
        return f"_v{nid}"

    def expression(self, node: Node) -> str:
        if self.mode[node.id] == "num":
            return self._numpy(node)
        if self.mode[node.id] == "var" and self.steps[node.id].curvature is Curvature.CONSTANT:
            constant = self._constant_on_range(node)
            if constant is not None:
                return constant
        return self._cvxpy(node)

    # -- NumPy: the values of what depends on no variable -------------------------------------------------
    def _numpy(self, node: Node) -> str:
        op, args = node.op, [self.ref(a) for a in node.args]
        if op in _NUMPY_FORMS:
            return _form(_NUMPY_FORMS[op], node, args)
        if op == "scalar":
            return self._scalar_text(node.attrs, f"np.asarray({args[0]})", NUMPY_ATOMS, numpy=True)
        name = node.attrs[0]
        return NUMPY_REDUCTIONS[name].format(x=args[0], v=args[1] if len(args) > 1 else "", args=", ".join(args))

    # -- CVXPY: what depends on a variable or a Parameter -------------------------------------------------
    def _cvxpy(self, node: Node) -> str:
        op, args = node.op, [self.ref(a) for a in node.args]
        if op == "div":
            if self.mode[node.args[1]] == "var":
                raise _refuse(self.net, "a division by an expression of the variables has no CVXPY form", node)
            divisor = node.args[1]
            return f"{args[0]} / {args[1]}" if not self.net.nodes[divisor].shape else \
                f"_times({args[0]}, 1.0 / {args[1]})"
        if op in _CVXPY_FORMS:
            return _form(_CVXPY_FORMS[op], node, args)
        if op == "scalar":
            return self._scalar_cvxpy(node)
        return self._reduction_cvxpy(node)

    def _scalar_cvxpy(self, node: Node) -> str:
        u = self._signed(node.args[0], node.attrs[0])
        kind = node.attrs[0]
        if kind == "user":
            self._need_atom(node.attrs[1])
            return f"_atom_{node.attrs[1]}({u})"
        a = _num(node.attrs[1]) if len(node.attrs) > 1 else ""
        box = self.analyzer.box(node) if self.mode[node.id] == "var" else None
        for lo, hi, template in PIECES.get(kind, []) if box is not None else []:
            if lo <= box.lo and box.hi <= hi:
                return template.format(u=u, a=a)
        if kind == "leaky_relu":
            slope = node.attrs[1]
            return f"cp.{'maximum' if slope <= 1 else 'minimum'}({u}, {a} * {u})"
        if kind == "power":
            return self._power(node, u, box)
        template = CVXPY_ATOMS[kind]
        if kind == "elu" and self.mode[node.id] == "par":
            template = None                          # its epigraph form needs the variables' context
        if template is None:
            raise _refuse(self.net, f"`{kind}` has no CVXPY form, and `{node.label}` depends on "
                          f"{self._depends_on(node)}", node)
        return template.format(u=u, a=a)

    def _power(self, node: Node, u: str, box: Interval | None) -> str:
        p = float(node.attrs[1])
        if p == 1:
            return u
        if p == 2:
            return f"cp.square({u})"
        odd = p.is_integer() and p > 2 and int(p) % 2 == 1
        if odd and box is not None and box.hi <= 0 and box.lo < 0:   # on [0, 0] the plain form is DCP as is
            return f"-cp.power(-({u}), {_num(p)})"     # u^p = -(-u)^p, convex in -u >= 0
        return f"cp.power({u}, {_num(p)})"

    def _reduction_cvxpy(self, node: Node) -> str:
        name = node.attrs[0]
        if name in ("maximum", "minimum"):
            return CVXPY_REDUCTIONS[name].format(args=", ".join(self.ref(a) for a in node.args))
        x = f"_flat({self._signed(node.args[0], name)})"
        v = self.ref(node.args[1]) if len(node.args) > 1 else ""
        return CVXPY_REDUCTIONS[name].format(x=x, v=v, n=_num(self.net.nodes[node.args[0]].size))

    def _signed(self, nid: int, atom: str) -> str:
        """The argument, wrapped so that CVXPY sees the sign dcpnet's range gives it, where the atom's
        monotonicity depends on that sign: pos(u) for a convex u >= 0, -pos(-u) for a concave u <= 0."""
        u = self.ref(nid)
        if atom not in SIGN_MONOTONE or self.mode.get(nid) != "var":
            return u
        curv, r = self.steps[nid].curvature, self.analyzer.ranges[nid]
        if curv is Curvature.CONVEX and r.nonneg:
            return f"cp.pos({u})"
        if curv is Curvature.CONCAVE and r.nonpos:
            return f"-cp.pos(-({u}))"
        return u

    def _constant_on_range(self, node: Node) -> str | None:
        """The value of a node that depends on the variables but is one number on their domain."""
        if node.op == "scalar" and node.attrs[0] != "user":
            atom, box = self.analyzer.atom(node), self.analyzer.box(node)
            if box is not None and atom.monotonicity_on_box(box) is Monotonicity.CONSTANT:
                point = box.hi if math.isfinite(box.hi) else box.lo
                value = float(atom.f(np.float64(point)))
                if math.isfinite(value):
                    return f"np.full({node.shape!r}, {_num(value)})"
        if node.op in ("mul", "matmul") and any(self.analyzer.ranges[a] == Interval(0.0, 0.0) for a in node.args):
            return f"np.zeros({node.shape!r})"
        return None

    def _depends_on(self, node: Node) -> str:
        names = [self.net.nodes[i].attrs[0] for i in self.net.ancestors(node.id) if self.net.nodes[i].op == "var"
                 and self.mode.get(i) in ("var", "par")]
        return "the variable(s) " + ", ".join(f"`{n}`" for n in names) if names else "a Parameter"

    # -- shared by both --------------------------------------------------------------------------------
    def _scalar_text(self, attrs: tuple, u: str, table: dict, numpy: bool) -> str:
        if attrs[0] == "user":
            self._need_atom(attrs[1], numpy)
            return f"_atom{'_np' if numpy else ''}_{attrs[1]}({u})"
        a = _num(attrs[1]) if len(attrs) > 1 else ""
        return table[attrs[0]].format(u=u, a=a)

    def _need_atom(self, name: str, numpy: bool = False) -> None:
        key = ("np:" if numpy else "cp:") + name
        for e in st_walk(self.net.atom_defs[name].body):
            if e.__class__.__name__ == "Call" and e.func in self.net.atom_defs:
                self._need_atom(e.func, numpy)
        if key not in self.atoms:
            self.atoms.append(key)

    def atom_source(self) -> str:
        out = []
        for key in self.atoms:
            kind, name = key.split(":")
            numpy = kind == "np"
            a = self.net.atom_defs[name]
            out.append(f"\n\ndef _atom{'_np' if numpy else ''}_{name}(u):\n"
                       f"    return {self._body(a.body, numpy)}\n")
        return "".join(out)

    def _body(self, e, numpy: bool) -> str:
        from .. import syntax as st

        def power(n, base: str) -> str:
            if numpy:
                return f"np.power({base}, {_num(n.exponent)})"
            return f"cp.square({base})" if n.exponent == 2 else f"cp.power({base}, {_num(n.exponent)})"

        def binop(n, left: str, right: str) -> str:
            return f"_times({left}, {right})" if n.op == "*" and not numpy else f"({left} {n.op} {right})"
        return st.fold(e, {"num": lambda n: _num(n.value), "name": lambda n: "u", "neg": lambda n, x: f"(-{x})",
                           "pow": power, "binop": binop, "call": lambda n, args: self._body_call(n, args, numpy)})

    def _body_call(self, e, args: list[str], numpy: bool) -> str:
        if e.func in ("maximum", "minimum"):
            return f"{'np' if numpy else 'cp'}.{e.func}({', '.join(args)})" if not numpy or len(args) == 2 else \
                f"_fold(np.{e.func}, {', '.join(args)})"
        if e.func in self.net.atom_defs:
            return f"_atom{'_np' if numpy else ''}_{e.func}({args[0]})"
        table = NUMPY_ATOMS if numpy else CVXPY_ATOMS
        if table.get(e.func) is None or (e.func == "elu" and not numpy):
            raise _refuse(self.net, f"`{e.func}` (in an atom body) has no CVXPY form", None)
        a = _num(e.args[1].value) if len(e.args) > 1 else ""
        return "(" + table[e.func].format(u=args[0], a=a) + ")"


_BINARY = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
# the structural ops, written out: {0}, {1} the arguments, {i}, {j} the node's index or slice bounds
_NUMPY_FORMS = {**{op: f"np.asarray({{0}} {sym} {{1}})" for op, sym in _BINARY.items()},
                "matmul": "np.asarray({0}) @ np.asarray({1})", "neg": "-np.asarray({0})",
                "index": "np.asarray({0})[{i}]", "slice": "np.asarray({0})[{i}:{j}]",
                "concat": "np.concatenate([{ravelled}])"}
_CVXPY_FORMS = {"add": "{0} + {1}", "sub": "{0} - {1}", "mul": "_times({0}, {1})", "matmul": "{0} @ {1}",
                "neg": "-{0}", "index": "{0}[{i}]", "slice": "{0}[{i}:{j}]", "concat": "cp.hstack([{entries}])"}


def _form(template: str, node: Node, args: list[str]) -> str:
    """A structural op's text from its template (see `_NUMPY_FORMS`)."""
    attrs = list(node.attrs) + [None, None] if node.op in ("index", "slice") else [None, None]
    return template.format(*args, i=attrs[0], j=attrs[1], ravelled=", ".join(f"np.ravel({a})" for a in args),
                           entries=", ".join(f"_entries({a})" for a in args))


def _refuse(net: Network, message: str, node: Node | None) -> CvxpyRefused:
    line, col = (node.line, node.col) if node is not None and node.line else (1, 1)
    return CvxpyRefused(Diagnostic(f"cannot export to CVXPY: {message}", net.source.file, line, col))


# -- the public function ----------------------------------------------------------------------------------
def to_cvxpy(net: Network, output: str, params: dict, fixed: dict | None = None):
    """(expr, variables, constraints): `output` as a CVXPY expression of the inputs not in `fixed`.

    `params` maps every param to its value (an array inside its constraint, or a `cvxpy.Parameter`);
    `fixed` maps some inputs to values (arrays in their domains, or Parameters). Raises `CvxpyRefused`
    (a DcpnetError) when dcpnet does not prove `output` convex in the free inputs, or when an atom that a
    variable reaches has no CVXPY form; bad values are a DcpnetError too. The proof is asked of dcpnet's
    Verifier for the convex property alone (a second of witness search when it is not proved, for the
    reason). A vector output gives a vector expression (convex entrywise), for constraints like expr <= t.
    """
    import cvxpy as cp

    fixed = {} if fixed is None else dict(fixed)
    parametric = [k for k, v in {**params, **fixed}.items() if isinstance(v, cp.Expression)]
    for name in parametric:
        _check_parameter(net, name, (params if name in params else fixed)[name])
    numbers = checked_params(net, params, [p for p in net.params if p not in parametric])
    consts = const_values(net, params, skip=set(parametric))
    values = {**numbers, **consts, **{k: params[k] for k in parametric if k in params}}
    fixed_values = {}
    for name, value in fixed.items():
        if name not in net.variables or net.variables[name].kind != "input":
            raise _refuse(net, f"`{name}` in fixed is not an input of the network", None)
        fixed_values[name] = value if name in parametric else check_value(net, name, as_array(value), "fixed")
    source = cvxpy_source(net, output, list(fixed), parametric)
    namespace: dict = {"__name__": "dcpnet_generated_cvxpy"}
    exec(compile(source, f"<dcpnet to_cvxpy {net.source.file}>", "exec"), namespace)   # noqa: S102 - ours
    expr, variables, constraints = namespace["objective"](values, fixed_values)
    if net.nodes[net.names[output]].shape == () and not cp.Problem(cp.Minimize(expr), constraints).is_dcp():
        raise _refuse(net, f"CVXPY's rules do not accept the form written for `{output}` though dcpnet proves "
                      f"it convex (a user atom, or a range-based rule with no CVXPY counterpart)",
                      net.nodes[net.names[output]])
    return expr, variables, constraints


def _check_parameter(net: Network, name: str, p) -> None:
    var = net.variables.get(name)
    if var is None:
        return
    if tuple(p.shape) != var.shape:
        raise DcpnetError(Diagnostic(f"the cvxpy.Parameter for `{name}` has shape {tuple(p.shape)}; expected "
                                     f"{var.shape}", net.source.file, var.line, var.col))
    lo, hi = var.bounds.lo, var.bounds.hi
    if (lo >= 0 and not p.is_nonneg()) or (hi <= 0 and not p.is_nonpos()):
        attr = "nonneg=True" if lo >= 0 else "nonpos=True"
        raise DcpnetError(Diagnostic(f"`{name}` is declared in [{lo:g}, {hi:g}]: make its cvxpy.Parameter with "
                                     f"{attr}, so that CVXPY knows its sign", net.source.file, var.line, var.col))
    if getattr(p, "value", None) is not None:
        check_value(net, name, as_array(p.value), "cvxpy.Parameter value")
