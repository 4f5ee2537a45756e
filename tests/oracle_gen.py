"""Random expressions built twice: as a `.net` text for dcpnet and as a CVXPY expression, plus an evaluator.

Shared by tests/test_oracle.py and benchmarks/oracle.py. An expression is a small typed tree (`Expr`) over the
atoms both systems share; `make_case(seed)` draws one deterministically and renders it three ways:

- `case.text`: the `.net` source (inputs = CVXPY variables, params = CVXPY parameters, output `y`);
- `case.cvxpy()`: the same expression in CVXPY (cvxpy is imported lazily; it is an optional test dependency);
- `case.evaluate(env, ...)`: an independent evaluation in NumPy (float64, batched) or mpmath (exact inputs,
  `digits` significant digits), written from the textbook definitions, trusting nothing in dcpnet.

Semantics differ in one place on purpose, selected by `domain=`: CVXPY gives `power(u, p)` for p > 1 not a
power of two the implicit domain u >= 0 (so it calls x^3 convex), while dcpnet takes integer powers on all of R.
`domain="cvxpy"` evaluates with CVXPY's domain, so a witness can be shown to lie outside it. CVXPY also calls
such powers increasing, which lets it compose them with convex arguments whose set {u >= 0} is not convex;
both facets form the one named exception (`cvxpy_power_exception`).

>>> case = make_case(7)
>>> case.text.splitlines()[-1].startswith("y = ")
True
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

N = 3                                        # the length of every vector
SIGNS = ("", "nonneg", "nonpos")
DECL = {"": "", "nonneg": " >= 0", "nonpos": " <= 0"}
UNARY = ("relu", "abs", "square", "sqrt", "exp", "log", "softplus", "inv_pos", "entr", "huber")
POWERS = (2, 3, 4, 6, 0.5, 1.5, 2.5, -1, -0.5)
REDUCE = ("sum", "max", "min", "log_sum_exp", "norm1", "norm2", "norm_inf", "sum_squares")
SCALES = (-3.0, -2.0, -1.0, -0.5, 0.25, 0.5, 2.0, 3.0)      # dyadic: exact in binary and in decimal text
OFFSETS = (0.5, 1.0, 2.0, 0.25)
DIGITS = 100                                 # exact re-evaluations: inputs are floats, so exact to ~80 digits


class OutsideDomain(ValueError):
    """An atom's argument left its domain (mpmath evaluation)."""


@dataclass(frozen=True)
class Expr:
    """One node: `op` with children `args`, result `shape` (() or (N,)) and an attribute (name, p, c, ...)."""

    op: str
    args: tuple = ()
    shape: tuple = ()
    attr: object = None


def cvxpy_power_exception(p: float) -> bool:
    """The exponents p > 1 not a power of two, for which CVXPY's power(u, p) has the domain u >= 0 and is
    called increasing there. Two consequences, both the named exception: for integer p CVXPY's domain is
    smaller than dcpnet's (x^3 is not convex on R); for any such p, CVXPY composes it with a convex u whose
    set {u >= 0} need not be convex (max(x)^1.5: the midpoint of (1, -3) and (-3, 1) leaves the domain)."""
    if not p > 1:
        return False
    return not (float(p).is_integer() and (int(p) & (int(p) - 1)) == 0)


# -- drawing -----------------------------------------------------------------------------------------
@dataclass
class Case:
    """One random expression with its declarations; everything is a pure function of `seed`."""

    seed: int
    expr: Expr
    inputs: dict = field(default_factory=dict)     # name -> (shape, sign)
    params: dict = field(default_factory=dict)     # name -> (shape, sign)

    @property
    def text(self) -> str:
        lines = [f"input {n}{_shape(s)}{DECL[g]}" for n, (s, g) in self.inputs.items()]
        lines += [f"param {n}{_shape(s)}{DECL[g]}" for n, (s, g) in self.params.items()]
        lines.append(f"y = {render_net(self.expr)}")
        return "\n".join(lines) + "\n"

    def cvxpy(self):
        """(the CVXPY expression, {name: Variable or Parameter})."""
        import cvxpy as cp

        leaves = {}
        for n, (s, g) in self.inputs.items():
            leaves[n] = cp.Variable(s, name=n, nonneg=g == "nonneg", nonpos=g == "nonpos")
        for n, (s, g) in self.params.items():
            leaves[n] = cp.Parameter(s, name=n, nonneg=g == "nonneg", nonpos=g == "nonpos")
        return render_cvxpy(self.expr, leaves), leaves

    def sample(self, rng: np.random.Generator, n: int, scale: float = 1.0, names=None) -> dict:
        """n values of every leaf (or of `names`) within its declared sign, about `scale` in size."""
        decls = {**self.inputs, **self.params}
        out = {}
        for name in decls if names is None else names:
            shape, sign = decls[name]
            x = scale * rng.standard_normal((n, *shape))
            x = np.abs(x) if sign == "nonneg" else -np.abs(x) if sign == "nonpos" else x
            x = np.where(rng.random(x.shape) < 0.05, 0.0, x)           # the kinks and boundaries too
            out[name] = x
        return out

    def admissible(self, values: dict) -> bool:
        """Do the (unbatched) values respect the declared shapes and signs?"""
        decls = {**self.inputs, **self.params}
        for name, (shape, sign) in decls.items():
            if name not in values:
                continue
            x = np.asarray(values[name], dtype=float)
            if x.shape != shape or not np.all(np.isfinite(x)):
                return False
            if (sign == "nonneg" and np.any(x < 0)) or (sign == "nonpos" and np.any(x > 0)):
                return False
        return True

    def evaluate(self, env: dict, domain: str = "dcpnet", digits: int | None = None):
        """The value of y. NumPy float64 over a leading batch axis (NaN outside the domain) when `digits` is
        None; otherwise mpmath at `digits` digits on unbatched values, raising OutsideDomain."""
        if digits is None:
            with np.errstate(all="ignore"):
                return _eval(self.expr, {k: np.asarray(v, dtype=float) for k, v in env.items()}, _NP, domain)
        import mpmath

        with mpmath.workdps(digits):
            env = {k: _to_mp(v) for k, v in env.items()}
            return _eval(self.expr, env, _MP, domain)


def _shape(s: tuple) -> str:
    return "" if not s else "[" + ", ".join(map(str, s)) + "]"


def make_case(seed: int, max_depth: int = 4) -> Case:
    """A random expression over 1 to 3 inputs (scalar or vector, with a sign or not) and signed params."""
    rnd = random.Random(seed)
    case = Case(seed, Expr("const", attr=0.0))
    for i in range(rnd.randint(1, 3)):
        shape = (N,) if rnd.random() < 0.6 else ()
        case.inputs[f"x{i}"] = (shape, rnd.choices(SIGNS, weights=(3, 2, 1))[0])
    if not any(s for s, _ in case.inputs.values()):      # vectors feed the reductions and matrices
        case.inputs["x0"] = ((N,), case.inputs["x0"][1])
    gen = _Gen(rnd, case)
    out_shape = () if rnd.random() < 0.7 else (N,)
    case.expr = gen.expr(out_shape, rnd.randint(1, max_depth))
    case.params = dict(sorted(case.params.items()))
    return case


class _Gen:
    def __init__(self, rnd: random.Random, case: Case):
        self.rnd, self.case = rnd, case

    def leaf(self, shape: tuple) -> Expr:
        names = [n for n, (s, _) in self.case.inputs.items() if s == shape]
        if names:
            return Expr("var", shape=shape, attr=self.rnd.choice(names))
        vectors = [n for n, (s, _) in self.case.inputs.items() if s]     # make_case keeps one: take an entry
        v = Expr("var", shape=(N,), attr=self.rnd.choice(vectors))
        return Expr("index", (v,), (), self.rnd.randrange(N))

    def param(self, shape: tuple) -> str:
        prefix = "A" if len(shape) == 2 else "w"
        name = f"{prefix}{len([p for p in self.case.params if p.startswith(prefix)])}"
        if self.case.params and self.rnd.random() < 0.4:        # reuse one of the same kind
            same = [p for p in self.case.params if p.startswith(prefix)]
            if same:
                return self.rnd.choice(same)
        self.case.params[name] = (shape, self.rnd.choices(SIGNS, weights=(1, 3, 2))[0])
        return name

    def expr(self, shape: tuple, depth: int) -> Expr:
        r = self.rnd
        if depth <= 0:
            return self.leaf(shape)
        d = depth - 1
        kinds = ["atom"] * 5 + ["power"] * 2 + ["scale", "add", "sub", "neg", "offset", "maximum", "minimum"]
        kinds += ["matmul"] * 2 if shape else ["reduce"] * 4 + ["index", "dot"]
        kind = r.choice(kinds)
        if kind == "atom":
            return Expr("atom", (self.expr(shape, d),), shape, r.choice(UNARY))
        if kind == "power":
            return Expr("power", (self.expr(shape, d),), shape, r.choice(POWERS))
        if kind == "scale":
            return Expr("scale", (self.expr(shape, d),), shape, r.choice(SCALES))
        if kind == "offset":
            return Expr("offset", (self.expr(shape, d),), shape, r.choice(OFFSETS) * r.choice((-1, 1)))
        if kind == "neg":
            return Expr("neg", (self.expr(shape, d),), shape)
        if kind in ("add", "sub", "maximum", "minimum"):
            other = () if kind == "add" and shape and r.random() < 0.2 else shape     # broadcast a scalar
            return Expr(kind, (self.expr(shape, d), self.expr(other, r.randint(0, d))), shape)
        if kind == "matmul":
            return Expr("matmul", (self.expr((N,), d),), shape, self.param((N, N)))
        if kind == "dot":
            return Expr("dot", (self.expr((N,), d),), shape, self.param((N,)))
        if kind == "index":
            return Expr("index", (self.expr((N,), d),), shape, r.randrange(N))
        return Expr("reduce", (self.expr((N,), d),), shape, r.choice(REDUCE))


# -- rendering ---------------------------------------------------------------------------------------
def _num(c: float) -> str:
    return repr(float(c)) if not float(c).is_integer() else str(int(c))


def render_net(e: Expr) -> str:
    """The `.net` expression text (fully parenthesised, so precedence never matters)."""
    a = [render_net(x) for x in e.args]
    op = e.op
    if op == "var":
        return e.attr
    if op == "const":
        return _num(e.attr)
    if op == "atom":
        return f"{e.attr}({a[0]})"
    if op == "power":
        return f"({a[0]})^{_num(e.attr)}"
    if op == "scale":
        return f"({_num(e.attr)}) * ({a[0]})"
    if op == "offset":
        return f"({a[0]}) {'+' if e.attr >= 0 else '-'} {_num(abs(e.attr))}"
    if op == "neg":
        return f"-({a[0]})"
    if op in ("add", "sub"):
        return f"({a[0]}) {'+' if op == 'add' else '-'} ({a[1]})"
    if op in ("maximum", "minimum"):
        return f"{op}({a[0]}, {a[1]})"
    if op in ("matmul", "dot"):
        return f"{e.attr} @ ({a[0]})"
    if op == "index":
        return f"({a[0]})[{e.attr}]"
    return f"{e.attr}({a[0]})"


def render_cvxpy(e: Expr, leaves: dict):
    import cvxpy as cp

    a = [render_cvxpy(x, leaves) for x in e.args]
    op = e.op
    if op == "var":
        return leaves[e.attr]
    if op == "const":
        return cp.Constant(np.full(e.shape, float(e.attr)) if e.shape else float(e.attr))
    if op == "atom":
        f = {"relu": cp.pos, "abs": cp.abs, "square": cp.square, "sqrt": cp.sqrt, "exp": cp.exp, "log": cp.log,
             "softplus": cp.logistic, "inv_pos": cp.inv_pos, "entr": cp.entr,
             "huber": lambda u: cp.huber(u, 1)}[e.attr]
        return f(a[0])
    if op == "power":
        return cp.power(a[0], e.attr)
    if op == "scale":
        return float(e.attr) * a[0]
    if op == "offset":
        return a[0] + float(e.attr)
    if op == "neg":
        return -a[0]
    if op == "add":
        return a[0] + a[1]
    if op == "sub":
        return a[0] - a[1]
    if op == "maximum":
        return cp.maximum(a[0], a[1])
    if op == "minimum":
        return cp.minimum(a[0], a[1])
    if op in ("matmul", "dot"):
        return leaves[e.attr] @ a[0]
    if op == "index":
        return a[0][e.attr]
    f = {"sum": cp.sum, "max": cp.max, "min": cp.min, "log_sum_exp": cp.log_sum_exp, "norm1": cp.norm1,
         "norm2": lambda v: cp.norm(v, 2), "norm_inf": cp.norm_inf, "sum_squares": cp.sum_squares}[e.attr]
    return f(a[0])


# -- the independent evaluator ---------------------------------------------------------------------
def _to_mp(v):
    import mpmath

    arr = np.asarray(v, dtype=float)
    out = np.empty(arr.shape, dtype=object)
    for idx in np.ndindex(arr.shape):
        out[idx] = mpmath.mpf(float(arr[idx]))
    return out if arr.shape else out[()]


class _Numpy:
    """Elementwise atoms in float64 over arrays; NaN outside the domain."""

    @staticmethod
    def atom(name: str, u):
        if name == "relu":
            return np.maximum(u, 0.0)
        if name == "abs":
            return np.abs(u)
        if name == "square":
            return u * u
        if name == "sqrt":
            return np.where(u >= 0, np.sqrt(np.abs(u)), np.nan)
        if name == "exp":
            return np.exp(u)
        if name == "log":
            return np.where(u > 0, np.log(np.where(u > 0, u, 1.0)), np.nan)
        if name == "softplus":
            return np.logaddexp(0.0, u)
        if name == "inv_pos":
            return np.where(u > 0, 1.0 / np.where(u > 0, u, 1.0), np.nan)
        if name == "entr":
            safe = np.where(u > 0, u, 1.0)
            return np.where(u > 0, -u * np.log(safe), np.where(u == 0, 0.0, np.nan))
        if name == "huber":
            return np.where(np.abs(u) <= 1, u * u, 2 * np.abs(u) - 1)
        raise KeyError(name)

    @staticmethod
    def power(u, p: float, domain_nonneg: bool, open_at_zero: bool):
        if float(p).is_integer():
            v = u ** int(p) if p > 0 else np.where(u != 0, np.where(u != 0, u, 1.0) ** int(p), np.nan)
        else:
            v = np.abs(u) ** p
        bad = (u < 0) if domain_nonneg else np.zeros(np.shape(u), bool)
        bad = bad | (u == 0) if open_at_zero else bad
        return np.where(bad, np.nan, v)

    @staticmethod
    def reduce(name: str, v):
        if name == "sum":
            return v.sum(axis=-1)
        if name == "max":
            return v.max(axis=-1)
        if name == "min":
            return v.min(axis=-1)
        if name == "log_sum_exp":
            return np.logaddexp.reduce(v, axis=-1)
        if name == "norm1":
            return np.abs(v).sum(axis=-1)
        if name == "norm2":
            return np.sqrt((v * v).sum(axis=-1))
        if name == "norm_inf":
            return np.abs(v).max(axis=-1)
        if name == "sum_squares":
            return (v * v).sum(axis=-1)
        raise KeyError(name)

    maximum = staticmethod(np.maximum)
    minimum = staticmethod(np.minimum)


class _Mpmath:
    """The same atoms on object arrays of mpmath numbers; OutsideDomain outside the domain."""

    @staticmethod
    def _each(f, u):
        if isinstance(u, np.ndarray):
            out = np.empty(u.shape, dtype=object)
            for idx in np.ndindex(u.shape):
                out[idx] = f(u[idx])
            return out
        return f(u)

    @classmethod
    def atom(cls, name: str, u):
        import mpmath

        def need(ok):
            if not ok:
                raise OutsideDomain(name)

        def one(t):
            if name == "relu":
                return t if t > 0 else mpmath.mpf(0)
            if name == "abs":
                return abs(t)
            if name == "square":
                return t * t
            if name == "sqrt":
                need(t >= 0)
                return mpmath.sqrt(t)
            if name == "exp":
                return mpmath.exp(t)
            if name == "log":
                need(t > 0)
                return mpmath.log(t)
            if name == "softplus":
                return mpmath.log1p(mpmath.exp(t))
            if name == "inv_pos":
                need(t > 0)
                return 1 / t
            if name == "entr":
                need(t >= 0)
                return -t * mpmath.log(t) if t > 0 else mpmath.mpf(0)
            if name == "huber":
                return t * t if abs(t) <= 1 else 2 * abs(t) - 1
            raise KeyError(name)

        return cls._each(one, u)

    @classmethod
    def power(cls, u, p: float, domain_nonneg: bool, open_at_zero: bool):
        import mpmath

        def one(t):
            if (domain_nonneg and t < 0) or (open_at_zero and t == 0):
                raise OutsideDomain(f"power {p}")
            return t ** int(p) if float(p).is_integer() else t ** mpmath.mpf(p)

        return cls._each(one, u)

    @staticmethod
    def reduce(name: str, v):
        import mpmath

        if name == "sum":
            return np.sum(v, axis=-1)
        if name == "max":
            return np.max(v, axis=-1)
        if name == "min":
            return np.min(v, axis=-1)
        rows = v.reshape(-1, v.shape[-1])
        f = {"log_sum_exp": lambda r: mpmath.log(mpmath.fsum(mpmath.exp(t) for t in r)),
             "norm1": lambda r: mpmath.fsum(abs(t) for t in r),
             "norm2": lambda r: mpmath.sqrt(mpmath.fsum(t * t for t in r)),
             "norm_inf": lambda r: max(abs(t) for t in r),
             "sum_squares": lambda r: mpmath.fsum(t * t for t in r)}[name]
        out = np.empty(len(rows), dtype=object)
        for i, r in enumerate(rows):
            out[i] = f(r)
        return out.reshape(v.shape[:-1]) if v.ndim > 1 else out[0]

    @classmethod
    def maximum(cls, a, b):
        a, b = np.broadcast_arrays(np.asarray(a, dtype=object), np.asarray(b, dtype=object))
        return cls._pairwise(a, b, max)

    @classmethod
    def minimum(cls, a, b):
        a, b = np.broadcast_arrays(np.asarray(a, dtype=object), np.asarray(b, dtype=object))
        return cls._pairwise(a, b, min)

    @staticmethod
    def _pairwise(a, b, f):
        out = np.empty(a.shape, dtype=object)
        for idx in np.ndindex(a.shape):
            out[idx] = f(a[idx], b[idx])
        return out if a.shape else out[()]


_NP, _MP = _Numpy(), _Mpmath()


def _eval(e: Expr, env: dict, ops, domain: str):
    a = [_eval(x, env, ops, domain) for x in e.args]
    op = e.op
    if op == "var":
        return env[e.attr]
    if op == "const":
        return e.attr
    if op == "atom":
        return ops.atom(e.attr, a[0])
    if op == "power":
        p = e.attr
        if p == 2:
            return ops.atom("square", a[0])
        nonneg = not float(p).is_integer() or p < 0 or (domain == "cvxpy" and cvxpy_power_exception(p))
        return ops.power(a[0], p, nonneg, p < 0)
    if op == "scale":
        return e.attr * a[0]
    if op == "offset":
        return a[0] + e.attr
    if op == "neg":
        return -a[0]
    if op in ("add", "sub"):
        x, y = _align(a[0], a[1], e.args)
        return x + y if op == "add" else x - y
    if op in ("maximum", "minimum"):
        x, y = _align(a[0], a[1], e.args)
        return getattr(ops, op)(x, y)
    if op in ("matmul", "dot"):
        m, v = env[e.attr], a[0]
        if op == "dot":
            return (m * v).sum(axis=-1)
        return (m @ v[..., None])[..., 0]
    if op == "index":
        return a[0][..., e.attr]
    return ops.reduce(e.attr, a[0])


def _align(x, y, args):
    """A scalar operand next to a vector gets a trailing axis, so it broadcasts over the entries."""
    sx, sy = args[0].shape, args[1].shape
    if sx and not sy and isinstance(y, np.ndarray):
        y = y[..., None]
    if sy and not sx and isinstance(x, np.ndarray):
        x = x[..., None]
    return x, y


def relative_gap(fa, fb, fm, sign: float):
    """sign·(f(mid) − (f(a) + f(b))/2) over the magnitudes: > 0 breaks convexity (sign 1) or concavity (−1)."""
    gap = sign * (fm - (fa + fb) / 2)
    return gap / (abs(fa) + abs(fb) + abs(fm) + 1e-300)


# -- judging one case against CVXPY and against numbers ----------------------------------------------
PROPS = ("convex", "concave", "affine")


def cvxpy_verdicts(case: Case) -> dict:
    """CVXPY's answers {convex, concave, affine: bool} and `exception`: the expression holds a power CVXPY
    restricts to u >= 0 (p > 1 not a power of two) whose argument CVXPY does not know to be >= 0, so CVXPY's
    verdict may rest on its smaller domain, or on a domain that is not convex (see cvxpy_power_exception)."""
    expr, leaves = case.cvxpy()
    out = {"convex": expr.is_convex(), "concave": expr.is_concave(), "affine": expr.is_affine()}
    out["exception"] = any(not render_cvxpy(e.args[0], leaves).is_nonneg() for e in _walk(case.expr)
                           if e.op == "power" and cvxpy_power_exception(e.attr))
    return out


def _walk(e: Expr):
    yield e
    for x in e.args:
        yield from _walk(x)


def dcpnet_result(case: Case, budget: float = 0.5, seed: int = 0):
    """dcpnet's three verdicts on `y` in all inputs (params fixed within their declared signs)."""
    from dcpnet.graph import load_text
    from dcpnet.verify import Verifier

    net = load_text(case.text, f"<case {case.seed}>")
    return Verifier(net, seed=seed, budget=budget).verify("y", ["inputs"])


def exact_values(case: Case, a: dict, b: dict, fixed: dict, domain: str = "dcpnet", digits: int | None = None):
    """f(a), f(b), f((a+b)/2) in mpmath with the midpoint exact; OutsideDomain propagates."""
    import mpmath

    with mpmath.workdps(digits or DIGITS):
        mid = {k: _mid(_to_mp(a[k]), _to_mp(b[k])) for k in a}
        values = []
        for at in (a, b, mid):
            env = {k: (_to_mp(v) if k not in mid or at is not mid else v) for k, v in {**fixed, **at}.items()}
            values.append(_eval(case.expr, env, _MP, domain))
        return values


def _mid(x, y):
    return (x + y) / 2


def witness_problem(case: Case, prop: str, witness: dict, domain: str = "dcpnet") -> str | None:
    """None when the witness breaks `prop` in exact arithmetic (dcpnet's semantics); else what is wrong.
    With domain="cvxpy": None when it also lies inside CVXPY's domain (so CVXPY's proof would be wrong)."""

    a, b, fixed = witness["a"], witness["b"], witness["fixed"]
    if not (case.admissible(a) and case.admissible(b) and case.admissible(fixed)):
        return "the witness leaves the declared constraints"
    try:
        fa, fb, fm = exact_values(case, a, b, fixed, domain)
    except OutsideDomain as err:
        return f"a point of the witness lies outside the domain ({err})"
    idx = tuple(witness.get("index") or ())
    fa, fb, fm = (np.asarray(v, dtype=object)[idx] if idx else v for v in (fa, fb, fm))
    ok = _breaks(prop, fa, fb, fm)
    return None if ok else f"no Jensen gap at the witness: f(a)={fa}, f(b)={fb}, f(mid)={fm}"


def jensen_violation(case: Case, prop: str, rng: np.random.Generator, pairs: int = 600) -> str | None:
    """Search random pairs (params drawn too) for a break of a proved `prop`; a float break is confirmed in
    mpmath before it counts. A midpoint outside the domain between two points inside also counts."""
    names = list(case.inputs)
    signs = (1.0, -1.0) if prop == "affine" else (1.0,) if prop == "convex" else (-1.0,)
    for scale in (0.1, 1.0, 5.0):
        fixed = case.sample(rng, pairs, scale, list(case.params))
        a = case.sample(rng, pairs, scale, names)
        b = case.sample(rng, pairs, scale, names)
        near = rng.random(pairs) < 0.5           # half the pairs are short segments
        for k in names:
            step = 0.05 * scale * rng.standard_normal(a[k].shape)
            nb = case.sample(rng, pairs, 1.0, [k])[k] * 0 + a[k] + step
            _, sign = case.inputs[k]
            nb = np.maximum(nb, 0) if sign == "nonneg" else np.minimum(nb, 0) if sign == "nonpos" else nb
            b[k] = np.where(near.reshape(-1, *[1] * (a[k].ndim - 1)), nb, b[k])
        mid = {k: (a[k] + b[k]) / 2 for k in names}
        fa, fb, fm = (case.evaluate({**fixed, **at}) for at in (a, b, mid))
        fa, fb, fm = (np.asarray(v, dtype=float).reshape(pairs, -1) for v in (fa, fb, fm))
        inside = np.isfinite(fa) & np.isfinite(fb)
        with np.errstate(all="ignore"):
            worst = np.full(pairs, -np.inf)
            for sign in signs:
                rel = relative_gap(fa, fb, fm, sign)
                rel = np.where(inside & np.isnan(fm), np.inf, np.where(inside, rel, -np.inf))
                worst = np.maximum(worst, rel.max(axis=1))
        for i in np.argsort(-worst)[:5]:
            if not worst[i] > 1e-9:
                break
            w = {"a": {k: a[k][i] for k in names}, "b": {k: b[k][i] for k in names},
                 "fixed": {k: v[i] for k, v in fixed.items()}, "index": []}
            problem = _confirm(case, prop, w)
            if problem is not None:
                return problem
    return None


def nowhere_defined(case: Case, rng: np.random.Generator, n: int = 400) -> bool:
    """No sampled point (at three scales) lies in the expression's domain."""
    for scale in (0.1, 1.0, 10.0):
        env = case.sample(rng, n, scale)
        if np.isfinite(np.asarray(case.evaluate(env), dtype=float)).any():
            return False
    return True


def _breaks(prop: str, fa, fb, fm) -> bool:
    """Do exact values (DIGITS digits) break Jensen's inequality for `prop`, beyond any rounding doubt?
    The tolerance is relative: values of 1e-40 computed with 100 digits are still exact to 60 digits."""
    import mpmath

    with mpmath.workdps(DIGITS):
        gap = fm - (fa + fb) / 2
        tol = (abs(fa) + abs(fb) + abs(fm)) * mpmath.mpf(10) ** -30 + mpmath.mpf(10) ** -(DIGITS - 20)
        return bool({"convex": gap > tol, "concave": -gap > tol, "affine": abs(gap) > tol}[prop])


def _confirm(case: Case, prop: str, w: dict) -> str | None:
    """A description of the break when the float candidate survives in exact arithmetic, else None."""
    try:
        fa, fb, fm = exact_values(case, w["a"], w["b"], w["fixed"])
    except OutsideDomain:
        try:
            exact_values(case, w["a"], w["a"], w["fixed"])
            exact_values(case, w["b"], w["b"], w["fixed"])
        except OutsideDomain:
            return None            # an endpoint is outside: no claim there
        return f"the midpoint leaves the domain between two points inside it: {_point(w)}"
    flat = [np.ravel(np.asarray(v, dtype=object)) for v in (fa, fb, fm)]
    for ea, eb, em in zip(*flat):
        if _breaks(prop, ea, eb, em):
            return f"not {prop}: f(a)={float(ea):.6g}, f(b)={float(eb):.6g}, f(mid)={float(em):.6g} at {_point(w)}"
    return None


def _point(w: dict) -> str:
    def fmt(d):
        return {k: np.asarray(v, dtype=float).tolist() for k, v in d.items()}

    return f"a={fmt(w['a'])}, b={fmt(w['b'])}, fixed={fmt(w['fixed'])}"


def judge(case: Case, budget: float = 0.5, refute: bool = True, jensen_pairs: int = 300) -> dict:
    """Both systems' verdicts on one case and every disagreement that the issue's rules forbid:

    - `floor`: claims CVXPY proves that dcpnet does not (outside the named power exception);
    - `unsound`: a dcpnet proof that breaks in exact arithmetic, a witness that does not re-check, or a claim
      CVXPY proves refuted by a witness inside CVXPY's domain;
    - `vacuous`: CVXPY's proof holds only because the expression is defined nowhere (dcpnet may say unknown);
    - `missed` (not an error, a completeness measure): an `unknown` that this module's own random search
      refutes, confirmed in mpmath, so the refuter could have found it.
    """
    from dcpnet.graph import load_text
    from dcpnet.lattice import Verdict
    from dcpnet.verify import Verifier

    cvx = cvxpy_verdicts(case)
    net = load_text(case.text, f"<case {case.seed}>")
    res = Verifier(net, seed=0, budget=budget, refute=refute).verify("y", ["inputs"])
    dcp = {p: res[p].verdict.value for p in PROPS}
    rec = {"seed": case.seed, "cvxpy": cvx, "dcpnet": dcp, "floor": [], "unsound": [], "missed": [],
           "vacuous": []}
    rng = np.random.default_rng(case.seed)
    for prop in PROPS:
        verdict = res[prop].verdict
        if cvx[prop] and not cvx["exception"] and verdict is not Verdict.PROVED:
            if nowhere_defined(case, rng):
                rec["vacuous"].append(f"CVXPY proves {prop} on an empty domain, dcpnet says {verdict.value}")
            else:
                rec["floor"].append(f"CVXPY proves {prop}, dcpnet says {verdict.value}")
        if verdict is Verdict.PROVED and jensen_pairs:
            broken = jensen_violation(case, prop, rng, jensen_pairs)
            if broken:
                rec["unsound"].append(f"proved {prop}, but {broken}")
        if verdict is Verdict.REFUTED:
            problem = witness_problem(case, prop, res[prop].witness)
            if problem:
                rec["unsound"].append(f"refuted {prop} with a bad witness: {problem}")
            elif cvx[prop] and witness_problem(case, prop, res[prop].witness, domain="cvxpy") is None:
                rec["unsound"].append(f"CVXPY proves {prop}; dcpnet refutes it inside CVXPY's domain")
        if verdict is Verdict.UNKNOWN and refute and jensen_pairs and prop != "affine":
            broken = jensen_violation(case, prop, rng, jensen_pairs)
            if broken:
                rec["missed"].append(f"{prop} unknown, but {broken}")
    return rec


def cvxpy_class(cvx: dict) -> str:
    for prop in PROPS[::-1]:
        if cvx[prop]:
            return prop
    return "non-DCP"


def dcpnet_class(dcp: dict) -> str:
    for prop in PROPS[::-1]:
        if dcp[prop] == "proved":
            return prop
    refuted = [dcp[p] == "refuted" for p in ("convex", "concave")]
    return "neither (refuted)" if all(refuted) else "one refuted" if any(refuted) else "unknown"


def settled(dcp: dict) -> bool:
    """Both questions (convex? concave?) answered: proved or refuted, none unknown."""
    return all(dcp[p] != "unknown" for p in ("convex", "concave"))
