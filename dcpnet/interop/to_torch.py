"""The DAG as a PyTorch module: Python source generated from one table, run by `to_torch`, written by `export`.

`torch_source(net)` writes a self-contained module file (it imports torch, never dcpnet): one line of
`forward` per node, each taken from the table below (`ATOMS`, `REDUCTIONS`, and `_binary`/`_matmul` for the
shape-dependent operators), much as torch.fx turns a graph into code. `to_torch` runs that same source, so the
module it returns and the file `dcpnet export --to torch` writes are one thing.

Values carry a leading batch axis B exactly where they depend on an input, as in the evaluator: params stay
unbatched, so `W @ x` is one `linear(x, W)` over the batch. Parameters live in `module._parameters` under their
`.net` names (a name such as `eval` or `train` would otherwise clash with a Module method).

`project_()` clamps every constrained param onto its declared interval *in place*, with bounds rounded
inward in the param's own dtype: in float32 a bound of 0.7 is 0.699999988 to nearest, so the clamp uses
0.700000048 instead and the constraint holds exactly, as the certificate needs. It takes and ignores any
arguments, so `optimizer.register_step_post_hook(module.project_)` is the whole projection; it never
re-assigns a Parameter, so DDP/FSDP replicas and the optimizer's state keep pointing at the same tensors.

>>> import torch
>>> from dcpnet.graph import load_text
>>> net = load_text("input x[2]\\nparam W[3, 2] >= 0.7, b[3]\\nf = sum(relu(W @ x + b))\\n")
>>> m = to_torch(net, dtype=torch.float32)
>>> sorted(dict(m.named_parameters()))
['W', 'b']
>>> with torch.no_grad():
...     _ = m.W.fill_(0.0)
>>> m.project_(); bool((m.W.double() >= 0.7).all()), m(torch.ones(4, 2)).shape
(True, torch.Size([4]))
"""
from __future__ import annotations

import keyword
import linecache
import math

from .. import syntax as st
from ..graph import Network, Node
from ._params import checked_params, default_params

# -- the table: one torch expression per atom --------------------------------------------------------------
# Elementwise atoms: a template in the argument {u} (and {a}, the constant of a parametric atom).
# softplus: torch's default threshold (20) returns u itself where log1p(exp(u)) still differs by 1e-9·u
ATOMS = {
    "relu": "torch.relu({u})",
    "abs": "torch.abs({u})",
    "square": "torch.square({u})",
    "sqrt": "torch.sqrt({u})",
    "exp": "torch.exp({u})",
    "log": "torch.log({u})",
    "softplus": "_F.softplus({u}, threshold=40.0)",
    "sigmoid": "torch.sigmoid({u})",
    "tanh": "torch.tanh({u})",
    "elu": "_F.elu({u})",
    "selu": "_F.selu({u})",
    "gelu": "_F.gelu({u})",
    "silu": "_F.silu({u})",
    "inv_pos": "torch.reciprocal({u})",
    "entr": "torch.special.entr({u})",
    "huber": "_huber({u})",
    "leaky_relu": "_F.leaky_relu({u}, {a})",
    "power": "{u} ** {a}",
}
# Reductions of one argument: a template in {x}, the argument flattened to (B, n) or (n,).
REDUCTIONS = {
    "sum": "{x}.sum(-1)",
    "mean": "{x}.mean(-1)",
    "max": "{x}.amax(-1)",
    "min": "{x}.amin(-1)",
    "log_sum_exp": "torch.logsumexp({x}, -1)",
    "norm1": "{x}.abs().sum(-1)",
    "norm2": "torch.linalg.vector_norm({x}, 2, -1)",
    "norm_inf": "{x}.abs().amax(-1)",
    "sum_squares": "{x}.square().sum(-1)",
    "quad_over_lin": "{x}.square().sum(-1) / {v}",
    "maximum": "_maximum({args})",
    "minimum": "_minimum({args})",
}
BINARY = {"add": "{a} + {b}", "sub": "{a} - {b}", "mul": "{a} * {b}", "div": "{a} / {b}"}
SELECT = {"neg": "-{0}", "index": "{0}[..., {1}]", "slice": "{0}[..., {1}:{2}]"}   # the example axis stays first

# What the generated file defines before the class: the helpers the templates name.
_PRELUDE = '''\
import functools
import math

import torch
from torch.nn import functional as _F


def _huber(u):
    c = u.clamp(-1.0, 1.0)     # u² inside [-1, 1], 2|u| - 1 outside, with no u² overflow
    return c * c + 2 * (u.abs() - c.abs())


def _tensors(args):
    ref = next(a for a in args if isinstance(a, torch.Tensor))
    return [a if isinstance(a, torch.Tensor) else torch.as_tensor(a, dtype=ref.dtype, device=ref.device)
            for a in args]


def _maximum(*args):
    return functools.reduce(torch.maximum, _tensors(args))


def _minimum(*args):
    return functools.reduce(torch.minimum, _tensors(args))


def _concat(n, batched, *pieces):
    """concat(...): the entries of each piece in a row; shared pieces are repeated over a batch of n."""
    if not any(batched):
        return torch.cat([torch.as_tensor(p).reshape(-1) for p in pieces])
    return torch.cat([p.reshape(p.shape[0], -1) if b else torch.as_tensor(p).reshape(1, -1).expand(n, -1)
                      for p, b in zip(pieces, batched)], dim=1)


def _batched(value, n, shape):
    """An output with its leading batch axis, as the evaluator gives it (a shared value is expanded)."""
    if not isinstance(value, torch.Tensor) or value.dim() == len(shape):
        return torch.as_tensor(value).expand(n, *shape)
    return value


_INSIDE = {}


def _inside(lo, hi, dtype):
    """The bounds [lo, hi] as numbers of `dtype` that lie inside [lo, hi] (None where infinite)."""
    key = (lo, hi, dtype)
    if key not in _INSIDE:
        def inward(bound, up):
            if math.isinf(bound):
                return None
            t = torch.tensor(bound, dtype=dtype)
            if (t.item() < bound) if up else (t.item() > bound):
                t = torch.nextafter(t, torch.tensor(math.inf if up else -math.inf, dtype=dtype))
            return t.item()
        _INSIDE[key] = (inward(lo, True), inward(hi, False))
    return _INSIDE[key]
'''

_CLASS = '''

class {name}(torch.nn.Module):
    """{doc}

    `{name}(params, dtype)`: params maps each param name to an array (a dict, or `numpy.load("PARAMS.npz")`);
    without it, LeCun-normal weights (absolute values where a param is bounded below by 0), zero biases,
    then projected. `forward` takes batched inputs (B, *shape) in this order: {inputs}.
    """

    inputs = {inputs_tuple}
    outputs = {outputs_tuple}
    shapes = {shapes}
    consts = {consts}                 # `const` declarations: fixed arrays, kept as buffers
    bounds = {bounds}                 # the declared constraints
    init_std = {init_std}             # LeCun scale 1/sqrt(fan-in) of the weights, 0 for the others

    def __init__(self, params=None, dtype=torch.float64):
        super().__init__()
        for name, shape in self.shapes.items():
            if params is None:
                value = torch.randn(shape, dtype=torch.float64) * self.init_std[name]
                if self.bounds.get(name, (-math.inf,))[0] == 0:
                    value = value.abs()
            else:
                value = torch.as_tensor(params[name], dtype=torch.float64)
                if tuple(value.shape) != shape:
                    raise ValueError(f"param `{{name}}` has shape {{tuple(value.shape)}}; expected {{shape}}")
                lo, hi = self.bounds.get(name, (-math.inf, math.inf))
                if not bool(((value >= lo) & (value <= hi)).all()):
                    raise ValueError(f"param `{{name}}` violates its constraint [{{lo}}, {{hi}}]")
            # straight into _parameters: a .net name like `eval` must not meet Module's attribute checks
            self._parameters[name] = torch.nn.Parameter(value.to(dtype).clone())
        for name, shape in self.consts.items():
            if params is None or name not in params:
                raise ValueError(f"const `{{name}}` needs a value in params")
            self._buffers[name] = torch.as_tensor(params[name], dtype=torch.float64).to(dtype).reshape(shape)
        self.project_()

    def project_(self, *hook_args):
        """Clamp every constrained param onto its declared set, in place, exact in its own dtype.
        Arguments are ignored: `optimizer.register_step_post_hook(module.project_)` works as it is."""
        with torch.no_grad():
            for name, (lo, hi) in self.bounds.items():
                p = self._parameters[name]
                low, high = _inside(lo, hi, p.dtype)
                p.clamp_(min=low, max=high)

    def forward(self{signature}):
{body}
'''


# -- generating the source --------------------------------------------------------------------------------
def torch_source(net: Network, outputs: list[str] | None = None, class_name: str = "Net") -> str:
    """The Python source of a self-contained module file for `net` (its outputs, or those named).

    >>> from dcpnet.graph import load_text
    >>> src = torch_source(load_text("input x[2]\\nparam W[3, 2]\\nf = sum(relu(W @ x))\\n"))
    >>> [ln.strip() for ln in src.splitlines() if "_F.linear" in ln]
    ["_v2 = _F.linear(x, _P['W'])  # W @ x"]
    """
    outputs = list(net.outputs if outputs is None else outputs)
    gen = _Forward(net, outputs)
    body = gen.run()
    inputs = net.inputs
    signature = "".join(f", {a}" for a in gen.arg_names)
    shapes = {p: net.variables[p].shape for p in net.params}
    bounds = {p: (net.variables[p].bounds.lo, net.variables[p].bounds.hi) for p in net.params
              if net.variables[p].bounds.lo > -math.inf or net.variables[p].bounds.hi < math.inf}
    init_std = _init_std(net)
    doc = f"`{net.source.file}` as a torch module (generated by dcpnet); outputs: {', '.join(outputs)}."
    atoms = "".join(gen.user_atom_source(name) for name in gen.user_atoms)
    return (f'"""Generated by dcpnet from {net.source.file}: a self-contained PyTorch module (no dcpnet needed).\n'
            f'\nEvery constrained param keeps its constraint exactly when `project_()` runs after each step:\n'
            f'    optimizer.register_step_post_hook(model.project_)\n"""\n'
            + _PRELUDE + atoms
            + _CLASS.format(name=class_name, doc=doc, inputs=", ".join(inputs) or "(none)",
                            inputs_tuple=_tuple(inputs), outputs_tuple=_tuple(outputs), shapes=_literal(shapes),
                            bounds=_literal(bounds), init_std=_literal(init_std), signature=signature, body=body,
                            consts=_literal({c: net.variables[c].shape for c in net.consts})))


def _tuple(names: list[str]) -> str:
    return "(" + "".join(f"{n!r}, " for n in names).rstrip(" ") + ")"


def _literal(d: dict) -> str:
    """A dict literal whose floats survive `inf` (written math.inf)."""
    def value(v):
        if isinstance(v, tuple):
            return "(" + ", ".join(value(x) for x in v) + ("," if len(v) == 1 else "") + ")"
        if isinstance(v, float) and math.isinf(v):
            return "math.inf" if v > 0 else "-math.inf"
        return repr(v)
    return "{" + ", ".join(f"{k!r}: {value(v)}" for k, v in d.items()) + "}"


def _init_std(net: Network) -> dict[str, float]:
    fan_in: dict[str, int] = {}
    var_of = {v.node: v.name for v in net.variables.values() if v.kind == "param"}
    for node in net.nodes:
        if node.op == "matmul":
            left, right = node.args
            if left in var_of:
                fan_in.setdefault(var_of[left], net.nodes[left].shape[-1])
            if right in var_of:
                fan_in.setdefault(var_of[right], net.nodes[right].shape[0])
    return {p: 1 / math.sqrt(fan_in[p]) if p in fan_in else 0.0 for p in net.params}


_RESERVED = {"self", "torch", "math", "functools"}


def _usable_arg(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name) and not name.startswith("_") \
        and name not in _RESERVED


def _num(value: float) -> str:
    text = repr(float(value))
    return f"({text})" if text.startswith("-") else text


class _Forward:
    """The body of `forward`: one assignment per node the outputs need, in topological order."""

    def __init__(self, net: Network, outputs: list[str]):
        self.net = net
        self.outputs = outputs
        self.batched: dict[int, bool] = {}
        self.user_atoms: list[str] = []
        inputs = net.inputs
        self.named_args = all(_usable_arg(n) for n in inputs)
        self.arg_names = inputs if self.named_args else ["*inputs"]

    def run(self) -> str:
        net = self.net
        targets = [net.names[o] for o in self.outputs]
        lines = []
        if not self.named_args:
            lines.append(f"({''.join(f'_in{i}, ' for i in range(len(net.inputs)))}) = inputs")
        lines.append("_P = self._parameters")
        if self.net.consts:
            lines.append("_C = self._buffers")
        lines.append(f"_n = {self._batch_size()}")
        for nid in sorted(set().union(*(net.ancestors(t) for t in targets))):
            node = net.nodes[nid]
            self.batched[nid] = self._is_batched(node)
            if node.op not in ("var", "const"):         # leaves are written where they are used
                lines.append(f"_v{nid} = {self.expression(node)}  # {node.text}")
        outs = [f"_batched({self.ref(t)}, _n, {net.nodes[t].shape!r})" for t in targets]
        lines.append("return " + (outs[0] if len(outs) == 1 else "(" + ", ".join(outs) + ")"))
        return "\n".join("        " + ln for ln in lines)

    def _batch_size(self) -> str:
        if not self.net.inputs:
            return "1"
        return f"{self._input_ref(self.net.inputs[0])}.shape[0]"

    def _input_ref(self, name: str) -> str:
        return name if self.named_args else f"_in{self.net.inputs.index(name)}"

    def _is_batched(self, node: Node) -> bool:
        if node.op == "var":
            return self.net.variables[node.attrs[0]].kind == "input"
        return any(self.batched[a] for a in node.args)

    # -- one node -----------------------------------------------------------------------------------
    def ref(self, nid: int) -> str:
        """How the body names a node's value: an input, `_P[name]`, a number, or the node's local."""
        node = self.net.nodes[nid]
        if node.op == "var":
            name = node.attrs[0]
            kind = self.net.variables[name].kind
            return self._input_ref(name) if kind == "input" else f"_P[{name!r}]" if kind == "param" else f"_C[{name!r}]"
        if node.op == "const":
            return _num(node.attrs[0])
        return f"_v{nid}"

    def expression(self, node: Node) -> str:
        op = node.op
        if op in BINARY:
            a, b = (self._lifted(i, node) for i in node.args)
            return BINARY[op].format(a=a, b=b)
        if op in SELECT:
            return SELECT[op].format(self.ref(node.args[0]), *node.attrs)
        if op == "concat":
            flags = tuple(self.batched[a] for a in node.args)
            return f"_concat(_n, {flags!r}, {', '.join(self.ref(a) for a in node.args)})"
        if op == "matmul":
            return self._matmul(node)
        if op == "scalar":
            return self._scalar(node.attrs, self.ref(node.args[0]))
        return self._reduction(node)

    def _lifted(self, nid: int, out: Node) -> str:
        """A batched scalar (B,) meeting an array (B, ...) is viewed as (B, 1, ...) to broadcast."""
        if self.batched[nid] and not self.net.nodes[nid].shape and out.shape:
            return f"{self.ref(nid)}[(...,{' None,' * len(out.shape)})]"
        return self.ref(nid)

    def _matmul(self, node: Node) -> str:
        ia, ib = node.args
        a_s, b_s = self.net.nodes[ia].shape, self.net.nodes[ib].shape
        a_vec, b_vec = self.batched[ia] and len(a_s) == 1, self.batched[ib] and len(b_s) == 1
        a, b = self.ref(ia), self.ref(ib)
        if len(a_s) == 2 and not self.batched[ia] and len(b_s) == 1:
            return f"_F.linear({b}, {a})"                    # shared W, vectors x: one GEMM x @ W.T
        if not b_vec and not (a_vec and self.batched[ib]):
            return f"torch.matmul({a}, {b})"                 # numpy's rules, the batch axis leading
        # batched vectors (B, n): numpy's rules would read them as matrices of B rows
        if len(a_s) == 1 and len(b_s) == 1:
            return f"({a} * {b}).sum(-1)"
        if len(b_s) == 1:
            return f"{b} @ {a}" if len(a_s) == 1 else f"torch.matmul({a}, {b}.unsqueeze(-1)).squeeze(-1)"
        return f"torch.matmul({a}.unsqueeze(-2), {b}).squeeze(-2)"

    def _scalar(self, attrs: tuple, u: str) -> str:
        kind = attrs[0]
        if kind == "user":
            if attrs[1] not in self.user_atoms:
                self._need_atom(attrs[1])
            return f"_atom_{attrs[1]}({u})"
        a = _num(attrs[1]) if len(attrs) > 1 else ""
        return ATOMS[kind].format(u=u, a=a)

    def _reduction(self, node: Node) -> str:
        name = node.attrs[0]
        if name in ("maximum", "minimum"):
            return REDUCTIONS[name].format(args=", ".join(self._lifted(i, node) for i in node.args))
        x = self._flat(node.args[0])
        v = self.ref(node.args[1]) if len(node.args) > 1 else ""
        return REDUCTIONS[name].format(x=x, v=v)

    def _flat(self, nid: int) -> str:
        v = self.ref(nid)
        return f"{v}.reshape({v}.shape[0], -1)" if self.batched[nid] else f"torch.as_tensor({v}).reshape(-1)"

    # -- user atoms: a function each, its body from the same table ------------------------------------
    def _need_atom(self, name: str) -> None:
        for e in st_walk(self.net.atom_defs[name].body):
            if isinstance(e, st.Call) and e.func in self.net.atom_defs and e.func not in self.user_atoms:
                self._need_atom(e.func)
        if name not in self.user_atoms:
            self.user_atoms.append(name)

    def user_atom_source(self, name: str) -> str:
        a = self.net.atom_defs[name]
        return f"\n\ndef _atom_{name}(u):\n    return {self._body(a.body, a.arg)}\n"

    def _body(self, e: st.Expr, arg: str) -> str:
        return st.fold(e, {"num": lambda n: _num(n.value), "name": lambda n: "u", "neg": lambda n, x: f"(-{x})",
                           "pow": lambda n, b: f"({b} ** {_num(n.exponent)})",
                           "binop": lambda n, a, b: f"({a} {n.op} {b})", "call": self._body_call})

    def _body_call(self, e: st.Call, args: list[str]) -> str:
        if e.func in ("maximum", "minimum"):
            return f"_{e.func}({', '.join(args)})"
        if e.func in self.net.atom_defs:
            return f"_atom_{e.func}({args[0]})"
        attrs = (e.func, e.args[1].value) if len(e.args) > 1 else (e.func,)
        return f"({self._scalar(attrs, args[0])})"


def st_walk(e: st.Expr):
    stack = [e]
    while stack:
        x = stack.pop()
        yield x
        if isinstance(x, st.BinOp):
            stack += [x.left, x.right]
        elif isinstance(x, st.Neg):
            stack.append(x.operand)
        elif isinstance(x, (st.Pow, st.Index)):
            stack.append(x.base)
        elif isinstance(x, st.Call):
            stack += list(x.args)


# -- the public functions ---------------------------------------------------------------------------------
def module_class(net: Network, outputs: list[str] | None = None):
    """The generated module class for `net`, its source registered with linecache (tracebacks show it)."""
    source = torch_source(net, outputs)
    filename = f"<dcpnet to_torch {net.source.file}#{abs(hash(source)):x}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict = {"__name__": "dcpnet_generated"}
    exec(compile(source, filename, "exec"), namespace)   # noqa: S102 - our own generated code
    return namespace["Net"]


def to_torch(net: Network, params: dict | None = None, dtype=None, outputs: list[str] | None = None):
    """A `torch.nn.Module` computing `net`'s outputs from batched inputs, params named as in the `.net`.

    `params` maps every param name to a value (array, number or tensor) inside its constraint; without it
    they start where `dcpnet train` starts them. `dtype` defaults to torch.float64. Every output has the
    batch axis of the inputs, also one that depends on the params alone (repeated over the batch).
    """
    import torch

    dtype = torch.float64 if dtype is None else dtype
    values = default_params(net) if params is None else checked_params(net, params)
    return module_class(net, outputs)(values, dtype=dtype)


def save_params(module, path) -> None:
    """Write the module's params (and consts) to PARAMS.npz (atomically), one array each in its own dtype:
    what `dcpnet eval/check --params` and `dcpnet.load_params` read."""
    from ..train.data import save_npz

    arrays = {}
    for name, p in [*module.named_parameters(), *module.named_buffers()]:   # buffers: the `const` arrays
        value = p.detach().cpu()
        if str(value.dtype) in ("torch.bfloat16", "torch.float16"):
            value = value.float()
        arrays[name] = value.numpy().copy()
    save_npz(path, arrays)

