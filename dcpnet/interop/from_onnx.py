"""Import an ONNX model: its nodes, read one by one into `.net` text and params.

Initializers become params (batch-norm statistics become consts), declared where a node first uses them as
data; one-entry initializers and `Constant` nodes become numbers, and the inputs an op reads as settings
(axes, exponents, bounds) are read as such. An exporter that constant-folds `softplus(W)` leaves a plain
initializer: a param of unknown sign, which `dcpnet check --params` then fixes to its values. Each op type
has a small writer in `WRITERS`; an op without one is refused with its type and the node's name.

The first axis of every graph input is the example axis and is stripped, as for torch. onnx is imported
only inside these functions.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import DcpnetError, Diagnostic
from . import netwriter as w
from .netwriter import Imported, NetText, Unsupported, Value


def from_onnx(path: str) -> tuple:
    """`(net, params)`: the ONNX model at `path` as a `dcpnet.graph.Network` and its weights as arrays."""
    imported = load_onnx(path)
    return imported.network(os.fspath(path)), imported.arrays


def load_onnx(path: str) -> Imported:
    import onnx

    try:
        model = onnx.load(os.fspath(path))
    except FileNotFoundError:
        raise DcpnetError(Diagnostic("cannot read the file: no such file", os.fspath(path), 1, 1)) from None
    except Exception as err:  # noqa: BLE001 - protobuf decoding fails in many ways
        raise DcpnetError(Diagnostic(f"not an ONNX model: {str(err).strip()[:200] or type(err).__name__}",
                                     os.fspath(path), 1, 1)) from None
    reader = _Reader(model, os.fspath(path))
    reader.run()
    out = reader.net
    return Imported(out.text(), out.arrays, out.mapping, out.notes)


class _Reader:
    def __init__(self, model, source: str):
        from onnx import numpy_helper

        self.graph = model.graph
        self.source = source
        opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
        self.net = NetText([f"imported from {os.path.basename(source)} by dcpnet (ONNX, opset {opset})",
                            "one line per node of the ONNX graph; the example axis is stripped"])
        self.initial = {t.name: numpy_helper.to_array(t).astype(np.float64) if numpy_helper.to_array(t).dtype.kind
                        in "biuf" else numpy_helper.to_array(t) for t in self.graph.initializer}
        self.values: dict[str, Value] = {}
        self.producer: dict[str, object] = {}
        self.const_roles: set[str] = set()
        self.comparisons: dict[str, _Comparison] = {}
        inputs = [vi.name for vi in self.graph.input if vi.name not in self.initial]
        # names first, in the file's order, so that no line takes the name of a weight declared later
        self.names = {n: self.net.namer.take(w.sanitise(n)) for n in inputs + list(self.initial)}

    def run(self) -> None:
        for node in self.graph.node:
            if node.op_type == "BatchNormalization":
                self.const_roles.update(node.input[3:5])     # running mean and variance: consts
        for vi in self.graph.input:
            if vi.name not in self.initial:
                self._input(vi)
        outputs = list(self.graph.output)
        self.output_names = [self.net.namer.take("out" if len(outputs) == 1 else f"out{i}")
                             for i in range(len(outputs))]
        for node in self.graph.node:
            self._node(node)
        for name, vi in zip(self.output_names, outputs):
            v = self.value(vi.name)
            if v.shape == (1,):                      # an output of shape (B, 1) is a scalar
                v = w.index(v, 0)
            self.net.lines.append(w.Line(name, v.text))
            self.net.outputs.append(name)

    def _input(self, vi) -> None:
        dims = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
        if not dims:
            raise self._fail(f"input `{vi.name}` has no example axis")
        if len(dims) > 2:
            raise self._fail(f"input `{vi.name}` has {len(dims) - 1} feature axes: inputs of more than one feature "
                             f"axis are refused for now")
        if len(dims) == 2 and not dims[1]:
            raise self._fail(f"input `{vi.name}` has a feature axis of unknown size")
        shape = tuple(dims[1:])
        self.values[vi.name] = self.net.declare("input", vi.name, self.names[vi.name], shape, taken=True)

    def _fail(self, message: str, node=None) -> DcpnetError:
        where = f" (node `{node.name or node.output[0]}`)" if node is not None else ""
        return DcpnetError(Diagnostic(message + where, self.source, 1, 1))

    # -- values and settings ------------------------------------------------------------------------------
    def value(self, name: str) -> Value:
        """The tensor `name` as an expression: declared on first use when it is an initializer."""
        if name in self.values:
            return self.values[name]
        if name not in self.initial:
            raise Unsupported(f"`{name}` is neither an input, an initializer nor computed earlier")
        array = self.initial[name]
        if array.size == 1:
            v = w.number(float(array.reshape(-1)[0]))
        else:
            if array.ndim > 2:
                raise Unsupported(f"the weight `{name}` has {array.ndim} axes")
            kind = "const" if name in self.const_roles else "param"
            v = self.net.declare(kind, name, self.names[name], array.shape, array, taken=True)
            if kind == "const" and name == self._variance_of(name):
                self.net.constraints[v.text] = ">= 0"
        self.values[name] = v
        return v

    def _variance_of(self, name: str) -> str | None:
        for node in self.graph.node:
            if node.op_type == "BatchNormalization" and len(node.input) > 4 and node.input[4] == name:
                return name
        return None

    def setting(self, name: str):
        """An input read as a setting (axes, an exponent, a bound): a constant array, or None if absent."""
        if not name:
            return None
        if name in self.initial:
            return self.initial[name]
        raise Unsupported(f"`{name}` must be a constant (an initializer or a Constant node)")

    # -- nodes --------------------------------------------------------------------------------------------
    def _node(self, node) -> None:
        from onnx import helper

        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        writer = WRITERS.get(node.op_type)
        if writer is None:
            raise self._fail(f"unsupported ONNX op `{node.op_type}`: dcpnet cannot import it yet", node)
        try:
            value = writer(self, node, attrs)
        except Unsupported as why:
            raise self._fail(f"`{node.op_type}`: {why}", node) from None
        self.producer[node.output[0]] = node
        if value is None:                            # a Constant: recorded as an initializer
            return
        if isinstance(value, _Comparison):
            self.comparisons[node.output[0]] = value
            return
        if value.batched and not _is_name(value):
            value = self.net.assign(w.sanitise(node.op_type.lower()), value, node.name or "")
        self.values[node.output[0]] = value

    def inputs(self, node) -> list[Value]:
        return [self.value(n) for n in node.input if n]


def _short(x: float) -> float:
    """An attribute stored as float32, read as the shortest decimal that float32 holds: 0.2, not 0.2000000029."""
    return float(str(np.float32(x)))


def _is_name(v: Value) -> bool:
    return v.precedence == w.ATOM and v.text.isidentifier()


# -- the writers: one small function per ONNX op type ------------------------------------------------------
def _constant(r, node, attrs):
    from onnx import numpy_helper

    if "value" in attrs:
        array = numpy_helper.to_array(attrs["value"])
    elif "value_float" in attrs or "value_int" in attrs:
        array = np.array(attrs.get("value_float", attrs.get("value_int")))
    elif "value_floats" in attrs or "value_ints" in attrs:
        array = np.array(attrs.get("value_floats", attrs.get("value_ints")))
    else:
        raise Unsupported("a Constant of this kind")
    r.initial[node.output[0]] = array.astype(np.float64) if array.dtype.kind in "biuf" else array


def _identity(r, node, attrs):
    return r.value(node.input[0])


def _gemm(r, node, attrs):
    a, b = r.value(node.input[0]), r.value(node.input[1])
    if attrs.get("transA", 0):
        a = w.transpose(a)
    if attrs.get("transB", 0):
        b = w.transpose(b)
    y = w.product(a, b)
    alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
    y = w.binary("*", alpha, y) if alpha != 1 else y
    if len(node.input) > 2 and node.input[2]:
        c = r.value(node.input[2])
        y = w.binary("+", y, w.binary("*", beta, c) if beta != 1 else c)
    return y


def _matmul(r, node, attrs):
    return w.product(*r.inputs(node))


def _transpose(r, node, attrs):
    perm = list(attrs.get("perm", [1, 0]))
    v = r.value(node.input[0])
    return v if perm == [0, 1] else w.transpose(v)


def _binary(op: str):
    def writer(r, node, attrs):
        return w.binary(op, *r.inputs(node))

    return writer


def _unary(name: str):
    def writer(r, node, attrs):
        return w.call(name, r.value(node.input[0]))

    return writer


def _softplus(r, node, attrs):
    return w.call("softplus", r.value(node.input[0]))


def _neg(r, node, attrs):
    return w.neg(r.value(node.input[0]))


def _leaky_relu(r, node, attrs):
    return w.call("leaky_relu", r.value(node.input[0]), _short(attrs.get("alpha", 0.01)))


def _elu(r, node, attrs):
    alpha = float(attrs.get("alpha", 1.0))
    if alpha != 1:
        raise Unsupported("Elu with alpha other than 1 (the language has elu with α = 1)")
    return w.call("elu", r.value(node.input[0]))


def _celu(r, node, attrs):
    alpha = float(attrs.get("alpha", 1.0))
    x = r.value(node.input[0])
    return w.call("elu", x) if alpha == 1 else w.binary("*", alpha, w.call("elu", w.binary("/", x, alpha)))


def _gelu(r, node, attrs):
    if attrs.get("approximate", b"none") not in (b"none", "none"):
        raise Unsupported("Gelu with the tanh approximation (the language has the exact gelu)")
    return w.call("gelu", r.value(node.input[0]))


def _pow(r, node, attrs):
    p = r.setting(node.input[1])
    if p is None or np.size(p) != 1:
        raise Unsupported("a power whose exponent is not one constant")
    return w.power(r.value(node.input[0]), float(np.reshape(p, -1)[0]))


def _reciprocal(r, node, attrs):
    return w.binary("/", 1, r.value(node.input[0]))


def _clip(r, node, attrs):
    x = r.value(node.input[0])
    lo = attrs.get("min") if len(node.input) < 2 else r.setting(node.input[1])
    hi = attrs.get("max") if len(node.input) < 3 else r.setting(node.input[2])
    if lo is not None:
        x = w.extremum("maximum", x, float(np.reshape(lo, -1)[0]))
    if hi is not None:
        x = w.extremum("minimum", x, float(np.reshape(hi, -1)[0]))
    return x


def _variadic(name: str):
    def writer(r, node, attrs):
        vs = r.inputs(node)
        out = vs[0]
        for v in vs[1:]:
            out = w.extremum(name, out, v)
        return out

    return writer


def _reduction(name: str):
    def writer(r, node, attrs):
        x = r.value(node.input[0])
        axes = attrs.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = r.setting(node.input[1])
        axes = None if axes is None else [int(a) for a in np.reshape(axes, -1)]
        ndim = len(x.shape) + (1 if x.batched else 0)
        if not axes:
            if x.batched:
                raise Unsupported("a reduction over every axis, the example axis too, mixes examples")
        elif x.batched and [a % ndim for a in axes] != [1]:
            raise Unsupported("a reduction over the example axis mixes examples")
        if x.shape == ():
            return w.call("abs", x) if name.startswith("norm") else x
        return w.reduce(name, x)

    return writer


def _batch_norm(r, node, attrs):
    if attrs.get("training_mode", 0):
        raise Unsupported("batch norm in training mode mixes examples; export the model in eval mode")
    x, scale, bias, mean, var = (r.value(n) for n in node.input[:5])
    eps = _short(attrs.get("epsilon", 1e-5))
    return w.batch_norm(x, scale, bias, mean, var, eps)


def _dropout(r, node, attrs):
    if len(node.input) > 2 and node.input[2]:
        training = r.setting(node.input[2])
        if training is not None and bool(np.reshape(training, -1)[0]):
            raise Unsupported("dropout in training mode is random")
    return r.value(node.input[0])


def _flatten(r, node, attrs):
    x = r.value(node.input[0])
    if attrs.get("axis", 1) != 1 or not x.batched:
        raise Unsupported("a Flatten that moves the example axis")
    return x


def _log_softmax(r, node, attrs):
    x = r.value(node.input[0])
    if not x.batched or attrs.get("axis", -1) % 2 != 1 or len(x.shape) != 1:
        raise Unsupported("a log-softmax over an axis other than the feature axis")
    return w.binary("-", x, w.reduce("log_sum_exp", x))


class _Comparison:
    """`Greater(u, t)`: only a softplus threshold uses it (see `_where`)."""

    def __init__(self, left: str, threshold: float):
        self.left, self.threshold = left, threshold


def _greater(r, node, attrs):
    t = r.setting(node.input[1]) if node.input[1] in r.initial else None
    if t is None or np.size(t) != 1:
        raise Unsupported("a comparison (only the threshold of softplus is understood)")
    return _Comparison(node.input[0], float(np.reshape(t, -1)[0]))


def _where(r, node, attrs):
    """`Where(u·β > t, u, softplus(u·β)/β)`: torch's softplus with its threshold, read as the exact softplus."""
    cond, then, other = node.input[:3]
    c = r.comparisons.get(cond)
    exact = r.producer.get(other)
    if c is None or exact is None:
        raise Unsupported("a selection (only the threshold of softplus is understood)")
    inner = exact
    if inner.op_type == "Div":
        inner = r.producer.get(inner.input[0])
    if inner is None or inner.op_type != "Softplus" or inner.input[0] != c.left:
        raise Unsupported("a selection (only the threshold of softplus is understood)")
    scaled = r.producer.get(c.left)
    if c.left != then and not (scaled is not None and scaled.op_type == "Mul" and then in scaled.input):
        raise Unsupported("a selection (only the threshold of softplus is understood)")
    r.net.note(f"softplus is the exact log(1 + exp(u)); the exporter switches to the identity above {c.threshold:g}"
               f"/beta, a difference of at most {np.log1p(np.exp(-c.threshold)):.2g}/beta")
    return r.value(other)


def _concat(r, node, attrs):
    xs = r.inputs(node)
    if any(x.batched for x in xs) and attrs.get("axis") not in (1, -1):
        raise Unsupported("concatenation along an axis other than the feature axis mixes examples")
    return w.concat(xs)


def _slice(r, node, attrs):
    x = r.value(node.input[0])
    starts, ends = r.setting(node.input[1]), r.setting(node.input[2])
    axes = r.setting(node.input[3]) if len(node.input) > 3 else None
    steps = r.setting(node.input[4]) if len(node.input) > 4 else None
    if np.size(starts) != 1 or (axes is not None and int(np.reshape(axes, -1)[0]) % 2 != 1) or not x.batched \
            or (steps is not None and int(np.reshape(steps, -1)[0]) != 1) or len(x.shape) != 1:
        raise Unsupported("slicing along an axis other than the feature axis, or with a step")
    n = x.shape[0]
    lo, hi = (int(np.clip(np.reshape(v, -1)[0], -n - 1, n)) for v in (starts, ends))   # ends may be INT_MAX
    return w.slice_of(x, lo + n if lo < 0 else lo, hi + n if hi < 0 else hi)


def _gather(r, node, attrs):
    x, i = r.value(node.input[0]), r.setting(node.input[1])
    if attrs.get("axis", 0) % 2 != 1 or not x.batched or np.ndim(i) != 0 or len(x.shape) != 1:
        raise Unsupported("a Gather other than one entry along the feature axis")
    return w.index(x, int(i) % x.shape[0])


WRITERS = {
    "Greater": _greater, "Where": _where, "Concat": _concat, "Slice": _slice, "Gather": _gather,
    "Constant": _constant, "Identity": _identity, "Dropout": _dropout, "Flatten": _flatten,
    "Gemm": _gemm, "MatMul": _matmul, "Transpose": _transpose,
    "Add": _binary("+"), "Sub": _binary("-"), "Mul": _binary("*"), "Div": _binary("/"), "Neg": _neg,
    "BatchNormalization": _batch_norm,
    **{op: _unary(f) for op, f in (("Relu", "relu"), ("Abs", "abs"), ("Exp", "exp"), ("Log", "log"),
                                   ("Sqrt", "sqrt"), ("Sigmoid", "sigmoid"), ("Tanh", "tanh"), ("Selu", "selu"))},
    "Softplus": _softplus, "LeakyRelu": _leaky_relu, "Elu": _elu, "Celu": _celu, "Gelu": _gelu, "Pow": _pow,
    "Reciprocal": _reciprocal, "Clip": _clip, "Max": _variadic("maximum"), "Min": _variadic("minimum"),
    "ReduceSum": _reduction("sum"), "ReduceMean": _reduction("mean"), "ReduceMax": _reduction("max"),
    "ReduceMin": _reduction("min"), "ReduceLogSumExp": _reduction("log_sum_exp"), "ReduceL1": _reduction("norm1"),
    "ReduceL2": _reduction("norm2"), "LogSoftmax": _log_softmax,
}
