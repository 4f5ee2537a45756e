"""Import a PyTorch model: the program `torch.export` records, read op by op into `.net` text and params.

The graph is read as exported, before decompositions, so `softplus`, `clamp`, `linear`, `batch_norm` stay
single ATen ops and a reparametrised weight (`softplus(W)`, `clamp(W, min=0)`, `torch.nn.utils.parametrize`)
stays an expression of the raw param, whose sign dcpnet's own rules see. Each op has a small writer in
`WRITERS`, keyed by the ATen op; an op without one is refused with its name and the line of the model's
code that made it (torch.export keeps stack traces).

The leading axis of every input is the example axis and is stripped: `(B, d)` becomes `input x[d]`, and a
forward that mixes examples is refused. torch is imported only inside these functions.

>>> import torch
>>> net, params = from_torch(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Softplus()), (torch.zeros(4, 3),))
>>> print(net.source.text.split("\\n\\n")[2])
linear     = p_0_weight @ input_1 + p_0_bias   # 0: Linear
softplus_1 = softplus(linear)   # 1: Softplus
out        = softplus_1
>>> net.inputs, sorted(params)         # forward(self, input): `input` is a keyword of the language
(['input_1'], ['p_0_bias', 'p_0_weight'])
"""
from __future__ import annotations

import os
import re

import numpy as np

from ..errors import DcpnetError, Diagnostic
from . import netwriter as w
from .netwriter import Imported, NetText, Unsupported, Value


def from_torch(module, example_args, source: str = "<torch module>") -> tuple:
    """`(net, params)`: the module as a `dcpnet.graph.Network` and its params and buffers as NumPy arrays.

    The module is exported in eval mode (dropout off, batch norm with its running statistics) and left in
    the mode it was in. `example_args` is the tuple of `forward`'s inputs, each with a leading example axis.
    """
    imported = import_torch_module(module, example_args, source)
    return imported.network(source), imported.arrays


def import_torch_module(module, example_args, source: str) -> Imported:
    import torch

    if not isinstance(example_args, tuple):
        example_args = tuple(example_args) if isinstance(example_args, list) else (example_args,)
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        program = torch.export.export(module, example_args)
    except Exception as err:  # noqa: BLE001 - torch.export fails in many ways; each is bad input here
        raise DcpnetError(Diagnostic(f"torch.export could not export the module: {_first_line(err)}",
                                     source, 1, 1)) from None
    finally:
        for m, training in modes:
            m.train(training)
    return read_exported(program, source)


def load_pt2(path: str) -> Imported:
    """Read a program saved with `torch.export.save` (a `.pt2` file)."""
    import torch

    try:
        program = torch.export.load(path)
    except FileNotFoundError:
        raise DcpnetError(Diagnostic("cannot read the file: no such file", path, 1, 1)) from None
    except Exception as err:  # noqa: BLE001 - a corrupt or foreign archive fails in many ways
        raise DcpnetError(Diagnostic(f"not a torch.export program: {_first_line(err)}", path, 1, 1)) from None
    return read_exported(program, path)


def read_exported(program, source: str) -> Imported:
    """The `.net` text and arrays of an `ExportedProgram`."""
    import torch

    reader = _Reader(program, source, torch.__version__)
    reader.run()
    out = reader.net
    return Imported(out.text(), out.arrays, out.mapping, out.notes)


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


class _Reader:
    def __init__(self, program, source: str, version: str):
        self.program = program
        self.source = source
        self.net = NetText([f"imported from {os.path.basename(source)} by dcpnet (torch.export, torch {version})",
                            "one line per op of the exported graph; the example axis is stripped"])
        self.values: dict = {}
        self.batch: int | None = None

    # -- the signature: inputs, params, buffers, outputs --------------------------------------------------
    def run(self) -> None:
        graph = self.program.graph
        self._refuse_dict_output()
        specs = {s.arg.name: s for s in self.program.graph_signature.input_specs if hasattr(s.arg, "name")}
        used = {n.name for n in graph.nodes if n.op == "placeholder" and n.users}
        for node in graph.nodes:
            if node.op == "placeholder":
                self._placeholder(node, specs.get(node.name), node.name in used)
        outputs = self._outputs()
        self.output_names = [self.net.namer.take("out" if len(outputs) == 1 else f"out{i}")
                             for i in range(len(outputs))]    # before any line can take them
        outputs = set(outputs)
        for node in graph.nodes:
            if node.op == "call_function" and (node.users or node in outputs):
                self._call(node)
        self._output_line()

    def _refuse_dict_output(self) -> None:
        try:
            spec = self.program.call_spec.out_spec
        except AttributeError:
            return
        if spec is not None and getattr(spec, "type", None) is dict:
            raise DcpnetError(Diagnostic("forward returns a dict; return a tensor or a tuple of tensors "
                                         "(dicts are refused for now)", self.source, 1, 1))

    def _placeholder(self, node, spec, used: bool) -> None:
        kind = spec.kind.name if spec is not None else "USER_INPUT"
        val = node.meta.get("val")
        shape = tuple(int(s) for s in getattr(val, "shape", ()))
        if kind == "USER_INPUT":
            self._input(node, shape)
        elif not used:
            return
        elif kind in ("PARAMETER", "BUFFER", "CONSTANT_TENSOR"):
            key = spec.target
            tensor = self.program.state_dict.get(key)
            if tensor is None:
                tensor = self.program.constants.get(key)
            value = tensor.detach().cpu().double().numpy()
            if value.ndim == 0 and kind != "PARAMETER":   # a scalar constant is just a number
                self.values[node] = w.number(float(value))
                return
            decl = "param" if kind == "PARAMETER" else "const"
            self.values[node] = self.net.declare(decl, key, w.sanitise(key), shape, value)
        else:
            raise DcpnetError(Diagnostic(f"an input of kind {kind} (`{node.name}`) is not supported",
                                         self.source, 1, 1))

    def _input(self, node, shape: tuple) -> None:
        if not shape:
            raise DcpnetError(Diagnostic(f"input `{node.name}` has no example axis: give each example input a "
                                         f"leading batch axis", self.source, 1, 1))
        if len(shape) > 2:
            raise DcpnetError(Diagnostic(f"input `{node.name}` has shape {list(shape)}: inputs of more than one "
                                         f"feature axis are refused for now", self.source, 1, 1))
        if self.batch is not None and shape[0] != self.batch:
            raise DcpnetError(Diagnostic(f"input `{node.name}` has {shape[0]} examples, others {self.batch}: "
                                         f"the leading axes must agree", self.source, 1, 1))
        self.batch = shape[0]
        self.values[node] = self.net.declare("input", node.name, w.sanitise(node.name), shape[1:])

    def _outputs(self) -> list:
        out = next(n for n in self.program.graph.nodes if n.op == "output")
        names = {s.arg.name for s in self.program.graph_signature.output_specs
                 if s.kind.name == "USER_OUTPUT" and hasattr(s.arg, "name")}
        mutations = [s for s in self.program.graph_signature.output_specs if s.kind.name == "BUFFER_MUTATION"]
        if mutations:
            raise DcpnetError(Diagnostic(f"the forward updates buffer `{mutations[0].target}` (batch norm in "
                                         f"training mode?): it mixes examples; export the module in eval mode",
                                         self.source, 1, 1))
        flat = out.args[0] if isinstance(out.args[0], (tuple, list)) else (out.args[0],)
        return [n for n in flat if getattr(n, "name", None) in names]

    # -- ops -----------------------------------------------------------------------------------------------
    def _call(self, node) -> None:
        key = _op_key(node.target)
        writer = WRITERS.get(key)
        if writer is None:
            raise self._error(node, f"unsupported op `{key}`: dcpnet cannot import it yet")
        try:
            args = [self._arg(a) for a in node.args]
            kwargs = {k: self._arg(v) for k, v in node.kwargs.items()}
            value = writer(self, node, *args, **kwargs)
        except Unsupported as why:
            raise self._error(node, f"`{key}`: {why}") from None
        self.values[node] = self._line(node, value)

    def _arg(self, a):
        import torch.fx

        if isinstance(a, torch.fx.Node):
            v = self.values.get(a)
            if isinstance(v, _NotAValue):
                raise Unsupported(v.why)
            return v
        if isinstance(a, (list, tuple)):
            return type(a)(self._arg(x) for x in a)
        return a

    def _line(self, node, value):
        """Values that depend on the inputs get a line of their own (one per op); weights stay inline."""
        if not isinstance(value, Value) or not value.batched or value.precedence == w.ATOM and \
                re.fullmatch(r"[A-Za-z_]\w*", value.text):
            return value
        path, kind = _module_of(node)
        comment = f"{path}: {kind}" if path else ""
        # named after the module that made it (`layers_0`), else after the op (`relu_2`), numbered afresh
        wanted = w.sanitise(path) if path and not path[0].isdigit() else re.sub(r"_\d+$", "", node.name)
        return self.net.assign(wanted, value, comment)

    def _output_line(self) -> None:
        outs = self._outputs()
        for name, node in zip(self.output_names, outs):
            v = self.values[node]
            tshape = tuple(node.meta["val"].shape)
            if v.shape == (1,) and tshape[1:] == (1,):   # an output of shape (B, 1) is a scalar
                v = w.index(v, 0)
            self.net.lines.append(w.Line(name, v.text))
            self.net.outputs.append(name)

    def _error(self, node, message: str) -> DcpnetError:
        file, line, code = _where(node)
        return DcpnetError(Diagnostic(f"{message} (in {os.path.basename(self.source)})", file or self.source, line,
                                      len(code) - len(code.lstrip()) + 1 if code else 0, code))

    # -- helpers for the writers --------------------------------------------------------------------------
    def tshape(self, node) -> tuple:
        """The shape the model sees, without the example axis when the value is per example."""
        shape = tuple(int(s) for s in node.meta["val"].shape)
        return shape

    def feature_dims(self, node, x: Value, dims) -> None:
        """A reduction must run over the feature axis only: never over the examples."""
        arg = node.args[0]
        ndim = len(arg.meta["val"].shape)
        dims = list(range(ndim)) if dims is None or dims == [] else [d % ndim for d in
                                                                       (dims if isinstance(dims, (list, tuple))
                                                                        else [dims])]
        if x.batched and (0 in dims or ndim != 2 or dims != [1]):
            raise Unsupported("a reduction over the example axis mixes examples")
        if not x.batched and sorted(dims) != list(range(ndim)):
            raise Unsupported("a partial reduction of a weight tensor")


class _NotAValue:
    """An entry of a tuple result that the language has no use for (the indices of `max`, a dropout mask)."""

    def __init__(self, why: str):
        self.why = why


def _op_key(target) -> str:
    """`aten.linear` for every overload of linear; `getitem` for tuple indexing."""
    name = getattr(target, "__name__", str(target))
    text = str(target)
    if text.startswith("aten."):
        return text.rsplit(".", 1)[0] if text.count(".") >= 2 else text
    return name


def _module_of(node) -> tuple[str, str]:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", ""
    path, kind = list(stack.values())[-1]
    return path, str(kind).rsplit(".", 1)[-1] if isinstance(kind, str) else getattr(kind, "__name__", "")


def _where(node) -> tuple[str, int, str]:
    """The file, line and code of the model that made this op: the innermost frame outside torch itself."""
    frames = re.findall(r'File "([^"]+)", line (\d+), in [^\n]*\n([^\n]*)', node.meta.get("stack_trace") or "")
    if not frames:
        return "", 0, ""
    import torch

    home = os.path.dirname(torch.__file__)
    mine = [f for f in frames if not os.path.abspath(f[0]).startswith(home)] or frames
    file, line, code = mine[-1]
    return file, int(line), code.rstrip()


# -- the writers: one small function per ATen op ----------------------------------------------------------
def _identity(r, node, x, *rest, **kw):
    return x


def _dropout(r, node, x, p=0.5, train=False, *rest):
    if train:
        raise Unsupported("dropout in training mode is random; export the module in eval mode")
    return x


def _native_dropout(r, node, x, p=0.5, train=False):
    return _dropout(r, node, x, p, train), _NotAValue("the mask of dropout")


def _linear(r, node, x, weight, bias=None):
    y = w.product(x, w.transpose(weight))
    return w.binary("+", y, bias) if bias is not None else y


def _matmul(r, node, a, b):
    return w.product(a, b)


def _addmm(r, node, bias, a, b, beta=1, alpha=1):
    y = w.product(a, b)
    y = w.binary("*", alpha, y) if alpha != 1 else y
    return w.binary("+", y, w.binary("*", beta, bias) if beta != 1 else bias)


def _t(r, node, a, *dims):
    return w.transpose(a)


def _permute(r, node, a, dims):
    if [d % 2 for d in dims] == [0, 1]:
        return a
    return w.transpose(a)


def _add(r, node, a, b, alpha=1):
    return w.binary("+", a, w.binary("*", alpha, b) if alpha != 1 else b)


def _sub(r, node, a, b, alpha=1):
    return w.binary("-", a, w.binary("*", alpha, b) if alpha != 1 else b)


def _rsub(r, node, a, b, alpha=1):
    return w.binary("-", b, w.binary("*", alpha, a) if alpha != 1 else a)


def _mul(r, node, a, b):
    return w.binary("*", a, b)


def _div(r, node, a, b, rounding_mode=None):
    if rounding_mode is not None:
        raise Unsupported(f"division with rounding_mode={rounding_mode!r}")
    return w.binary("/", a, b)


def _neg(r, node, a):
    return w.neg(a)


def _elementwise(name: str):
    def writer(r, node, a):
        return w.call(name, a)

    return writer


def _softplus(r, node, a, beta=1.0, threshold=20.0):
    r.net.note(f"softplus is the exact log(1 + exp(u)); torch switches to the identity above {threshold:g}/beta, "
               f"a difference of at most {np.log1p(np.exp(-threshold)):.2g}/beta")
    if beta == 1:
        return w.call("softplus", a)
    return w.binary("/", w.call("softplus", w.binary("*", beta, a)), beta)


def _leaky_relu(r, node, a, slope=0.01):
    return w.call("leaky_relu", a, slope)


def _elu(r, node, a, alpha=1.0, scale=1.0, input_scale=1.0):
    if (alpha, scale, input_scale) != (1, 1, 1):
        raise Unsupported("elu with alpha, scale or input_scale other than 1 (the language has elu with α = 1; "
                          "use celu(x, alpha))")
    return w.call("elu", a)


def _celu(r, node, a, alpha=1.0):
    if alpha == 1:
        return w.call("elu", a)
    return w.binary("*", alpha, w.call("elu", w.binary("/", a, alpha)))   # celu_α(u) = α elu(u / α)


def _gelu(r, node, a, approximate="none"):
    if approximate != "none":
        raise Unsupported(f"gelu with approximate={approximate!r} (the language has the exact gelu)")
    return w.call("gelu", a)


def _pow(r, node, a, p):
    if not isinstance(p, (int, float)):
        raise Unsupported("a power whose exponent is a tensor")
    if not isinstance(a, Value):
        raise Unsupported("a number raised to a tensor power")
    return w.power(a, p)


def _square(r, node, a):
    return w.power(a, 2)


def _rsqrt(r, node, a):
    return w.power(a, -0.5)


def _reciprocal(r, node, a):
    return w.binary("/", 1, a)


def _log1p(r, node, a):
    return w.call("log", w.binary("+", 1, a))


def _expm1(r, node, a):
    return w.binary("-", w.call("exp", a), 1)


def _logsigmoid(r, node, a):
    return w.neg(w.call("softplus", w.neg(a)))


def _clamp(r, node, a, lo=None, hi=None):
    if lo is not None:
        a = w.extremum("maximum", a, lo)
    if hi is not None:
        a = w.extremum("minimum", a, hi)
    return a


def _clamp_max(r, node, a, hi):
    return w.extremum("minimum", a, hi)


def _hardtanh(r, node, a, lo=-1.0, hi=1.0):
    return _clamp(r, node, a, lo, hi)


def _relu6(r, node, a):
    return _clamp(r, node, a, 0, 6)


def _binary_extremum(name: str):
    def writer(r, node, a, b):
        return w.extremum(name, a, b)

    return writer


def _reduction(name: str):
    def writer(r, node, x, dim=None, keepdim=False, *rest, **kw):
        r.feature_dims(node, x, dim)
        if x.shape == ():   # a (B, 1) column already read as one number per example
            return w.call("abs", x) if name.startswith("norm") else x
        return w.reduce(name, x)

    return writer


def _max_dim(name: str):
    """`max(x, dim)` gives (values, indices); `max(x)` one value; `max(a, b)` is elementwise."""
    def writer(r, node, x, dim=None, keepdim=False):
        if isinstance(dim, Value):
            return w.extremum("maximum" if name == "max" else "minimum", x, dim)
        if dim is None:
            return _reduction(name)(r, node, x, None)
        return _reduction(name)(r, node, x, [dim]), _NotAValue(f"the indices of {name}")

    return writer


def _logsumexp(r, node, x, dim, keepdim=False):
    return _reduction("log_sum_exp")(r, node, x, dim)


def _log_softmax(r, node, x, dim, half_to_float=False):
    return w.binary("-", x, _reduction("log_sum_exp")(r, node, x, [dim]))


_NORMS = {2: "norm2", 1: "norm1", float("inf"): "norm_inf"}


def _vector_norm(r, node, x, ord=2, dim=None, keepdim=False, dtype=None):
    if ord not in _NORMS:
        raise Unsupported(f"the {ord}-norm (the language has the 1-, 2- and inf-norms)")
    return _reduction(_NORMS[ord])(r, node, x, dim)


def _norm(r, node, x, p=2, dim=None, keepdim=False, *rest):
    return _vector_norm(r, node, x, 2 if p is None else p, dim, keepdim)


def _batch_norm(r, node, x, weight, bias, mean, var, training, momentum, eps, *rest):
    if training:
        raise Unsupported("batch norm in training mode mixes examples; export the module in eval mode")
    return _eval_batch_norm(r, node, x, weight, bias, mean, var, eps)


def _native_batch_norm_no_training(r, node, x, weight, bias, mean, var, momentum, eps):
    out = _eval_batch_norm(r, node, x, weight, bias, mean, var, eps)
    return out, _NotAValue("the saved mean of batch norm"), _NotAValue("the saved statistics of batch norm")


def _eval_batch_norm(r, node, x, weight, bias, mean, var, eps):
    if mean is None or var is None or not x.batched or len(x.shape) != 1:
        raise Unsupported("batch norm needs running statistics and inputs of shape (B, C)")
    if var.text in r.net.arrays:              # a variance is never negative: say so to the rules
        r.net.constraints[var.text] = ">= 0"
    return w.batch_norm(x, weight, bias, mean, var, eps)


def _getitem(r, node, seq, i):
    v = seq[i]
    if isinstance(v, _NotAValue):
        return v
    return v


def _reshape(r, node, x, *rest, **kw):
    """A view that keeps the example axis and at most one feature axis is the same value."""
    new = r.tshape(node)
    if not x.batched:
        if new == x.tshape:
            return x
        raise Unsupported(f"reshaping a weight from {list(x.tshape)} to {list(new)}")
    if not new or new[0] != r.batch:
        raise Unsupported(f"a view to shape {list(new)} moves the example axis (mixes examples)")
    rest_shape = new[1:]
    size = int(np.prod(x.shape)) if x.shape else 1
    if int(np.prod(rest_shape)) != size or len([s for s in rest_shape if s != 1]) > 1:
        raise Unsupported(f"a view to shape {list(new)}: the language has one feature axis")
    if x.shape == rest_shape or (rest_shape in ((), (1,)) and x.shape == ()):
        return x
    if x.shape == (1,) and rest_shape == ():
        return w.index(x, 0)
    if len(rest_shape) == 1 and len(x.shape) == 1:
        return x
    raise Unsupported(f"a view from {list(x.shape)} to {list(rest_shape)} per example")


def _select(r, node, x, dim, i):
    ndim = len(node.args[0].meta["val"].shape)
    if x.batched and dim % ndim != 1 or not x.batched and ndim != 1:
        raise Unsupported("selecting along an axis other than the feature axis")
    n = x.shape[0] if x.shape else 1
    return x if not x.shape else w.index(x, i % n)


def _slice(r, node, x, dim=0, start=None, end=None, step=1):
    full = tuple(node.args[0].meta["val"].shape)
    if tuple(node.meta["val"].shape) == full:
        return x                            # a slice that keeps everything
    if not x.batched or dim % len(full) != 1 or len(full) != 2 or step != 1:
        raise Unsupported("slicing along an axis other than the feature axis, or with a step")
    n = full[1]
    lo, hi = (0 if start is None else start), (n if end is None else end)
    lo, hi = (lo + n if lo < 0 else lo), (hi + n if hi < 0 else hi)
    return w.slice_of(x, lo, hi)


def _cat(r, node, xs, dim=0):
    if any(x.batched for x in xs):
        ndim = len(node.meta["val"].shape)
        if ndim != 2 or dim % ndim != 1:
            raise Unsupported("concatenation along an axis other than the feature axis mixes examples")
    return w.concat(list(xs))


WRITERS = {
    # plumbing that does not change the value
    "aten.alias": _identity, "aten.clone": _identity, "aten.contiguous": _identity, "aten.detach": _identity,
    "aten.lift_fresh_copy": _identity, "aten._to_copy": _identity, "aten.to": _identity,
    "aten.dropout": _dropout, "aten.feature_dropout": _dropout, "aten.alpha_dropout": _dropout,
    "aten.feature_alpha_dropout": _dropout, "aten.native_dropout": _native_dropout,
    "aten.view": _reshape, "aten.reshape": _reshape, "aten._unsafe_view": _reshape, "aten.flatten": _reshape,
    "aten.unsqueeze": _reshape, "aten.squeeze": _reshape, "getitem": _getitem,
    "aten.select": _select, "aten.slice": _slice, "aten.cat": _cat, "aten.concat": _cat,
    # affine maps
    "aten.linear": _linear, "aten.matmul": _matmul, "aten.mm": _matmul, "aten.addmm": _addmm,
    "aten.t": _t, "aten.transpose": _t, "aten.permute": _permute, "aten.numpy_T": _t,
    "aten.add": _add, "aten.sub": _sub, "aten.rsub": _rsub, "aten.mul": _mul, "aten.div": _div,
    "aten.neg": _neg, "aten.batch_norm": _batch_norm,
    "aten._native_batch_norm_legit_no_training": _native_batch_norm_no_training,
    # elementwise functions
    **{f"aten.{f}": _elementwise(f) for f in ("relu", "abs", "exp", "log", "sqrt", "sigmoid", "tanh", "selu",
                                              "silu")},
    "aten.softplus": _softplus, "aten.leaky_relu": _leaky_relu, "aten.elu": _elu, "aten.celu": _celu,
    "aten.gelu": _gelu, "aten.pow": _pow, "aten.square": _square, "aten.rsqrt": _rsqrt,
    "aten.reciprocal": _reciprocal, "aten.log1p": _log1p, "aten.expm1": _expm1, "aten.log_sigmoid": _logsigmoid,
    "aten.clamp": _clamp, "aten.clip": _clamp, "aten.clamp_min": _clamp, "aten.clamp_max": _clamp_max,
    "aten.hardtanh": _hardtanh, "aten.relu6": _relu6,
    "aten.maximum": _binary_extremum("maximum"), "aten.minimum": _binary_extremum("minimum"),
    "aten.fmax": _binary_extremum("maximum"), "aten.fmin": _binary_extremum("minimum"),
    # reductions over the feature axis
    "aten.sum": _reduction("sum"), "aten.mean": _reduction("mean"), "aten.amax": _reduction("max"),
    "aten.amin": _reduction("min"), "aten.max": _max_dim("max"), "aten.min": _max_dim("min"),
    "aten.logsumexp": _logsumexp, "aten.log_softmax": _log_softmax,
    "aten.linalg_vector_norm": _vector_norm, "aten.norm": _norm,
}
