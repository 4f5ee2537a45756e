"""Writing `.net` text for the importers: values as expression text, names, and the assembled file.

Both importers (from_torch, from_onnx) turn each operation of a model into an expression over the names of
earlier lines; this module holds what they share: `Value` (expression text with its shape in the language),
the text of each kind of expression with the parentheses it needs, the naming rules of issue 15, and the file
with its header, declarations, one line per layer and the output line.

>>> x = Value("x", (3,), batched=True)
>>> W = Value("W", (4, 3), batched=False)
>>> binary("+", product(x, transpose(W)), Value("b", (4,), batched=False)).text
'W @ x + b'
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace

import numpy as np

# precedence of an expression's text, as graph.py counts it: sums, products, negation, powers, atoms
SUM, PRODUCT, NEGATION, POWER, ATOM = 1, 2, 3, 4, 9
_BINARY_PRECEDENCE = {"+": SUM, "-": SUM, "*": PRODUCT, "/": PRODUCT, "@": PRODUCT}
KEYWORDS = {"input", "param", "const", "atom", "output", "check", "not", "in", "convex", "concave", "affine",
            "inputs", "params"}


class Unsupported(Exception):
    """An operation the language cannot express; the importer adds where in the model it was."""


@dataclass(frozen=True)
class Value:
    """One tensor of the model as `.net` expression text.

    `shape` is the shape in the language: without the example axis when `batched` (the value depends on an
    input). A matrix with `transposed` set is the transpose of what its text denotes (`W.t()` of a param W:
    the text stays `W`, and `x @ W.t()` is written `W @ x`).
    """

    text: str
    shape: tuple
    batched: bool
    precedence: int = ATOM
    transposed: bool = False

    @property
    def tshape(self) -> tuple:
        """The shape the model sees (without the example axis)."""
        return self.shape[::-1] if self.transposed else self.shape


def wrap(v: Value, outer: int) -> str:
    return f"({v.text})" if v.precedence < outer else v.text


def number(c: float) -> Value:
    c = float(c)
    if not math.isfinite(c):
        raise Unsupported(f"the constant {c} is not a finite number")
    text = repr(c) if c != int(c) or abs(c) >= 1e16 else str(int(c))
    return Value(text, (), False, NEGATION if c < 0 else ATOM)


def as_value(x) -> Value:
    return x if isinstance(x, Value) else number(x)


def _common_shape(a: Value, b: Value, what: str) -> tuple[Value, Value, tuple]:
    """Scalars broadcast; a one-entry vector meets a longer vector as its entry (a (B, 1) column)."""
    if a.shape and b.shape and a.transposed != b.transposed:
        raise Unsupported(f"`{what}` of a transposed matrix and another one")
    if not a.shape or not b.shape or a.shape == b.shape:
        return a, b, a.shape or b.shape
    if a.shape == (1,) and len(b.shape) == 1:
        return index(a, 0), b, b.shape
    if b.shape == (1,) and len(a.shape) == 1:
        return a, index(b, 0), a.shape
    raise Unsupported(f"`{what}` of shapes {list(a.tshape)} and {list(b.tshape)} (the language broadcasts only "
                      f"scalars)")


def binary(op: str, a, b) -> Value:
    """`a op b` for + - * / with the language's broadcasting."""
    a, b = as_value(a), as_value(b)
    a, b, shape = _common_shape(a, b, op)
    p = _BINARY_PRECEDENCE[op]
    return Value(f"{wrap(a, p)} {op} {wrap(b, p + 1)}", shape, a.batched or b.batched, p,
                 a.transposed or b.transposed)


def neg(a: Value) -> Value:
    return replace(a, text=f"-{wrap(a, NEGATION)}", precedence=NEGATION)


def power(a: Value, p: float) -> Value:
    exponent = number(p).text
    return replace(a, text=f"{wrap(a, POWER + 1)}^{exponent}", precedence=POWER)


def call(f: str, a: Value, *consts: float) -> Value:
    """An elementwise built-in (relu, softplus, leaky_relu(u, a), ...)."""
    extra = "".join(f", {number(c).text}" for c in consts)
    return replace(a, text=f"{f}({a.text}{extra})", precedence=ATOM)


def extremum(f: str, a, b) -> Value:
    """`maximum(a, b)` / `minimum(a, b)`, elementwise with scalars broadcast."""
    a, b = as_value(a), as_value(b)
    a, b, shape = _common_shape(a, b, f)
    return Value(f"{f}({a.text}, {b.text})", shape, a.batched or b.batched, ATOM, a.transposed or b.transposed)


def reduce(f: str, a: Value) -> Value:
    """A reduction over a vector's entries (sum, mean, max, min, log_sum_exp, norm1, norm2, norm_inf)."""
    if len(a.shape) != 1:
        raise Unsupported(f"`{f}` of a value of shape {list(a.tshape)}: only vectors reduce to scalars")
    return Value(f"{f}({a.text})", (), a.batched, ATOM)


def index(a: Value, i: int) -> Value:
    if len(a.shape) != 1:
        raise Unsupported(f"an entry of a value of shape {list(a.tshape)}")
    return Value(f"{wrap(a, ATOM)}[{i}]", (), a.batched, ATOM)


def slice_of(a: Value, start: int, stop: int) -> Value:
    """Entries start, ..., stop - 1 of a vector (the whole vector is itself)."""
    if len(a.shape) != 1:
        raise Unsupported(f"a slice of a value of shape {list(a.tshape)}")
    start, stop = max(0, start), min(a.shape[0], stop)
    if stop <= start:
        raise Unsupported("an empty slice")
    if (start, stop) == (0, a.shape[0]):
        return a
    return Value(f"{wrap(a, ATOM)}[{start}:{stop}]", (stop - start,), a.batched, ATOM)


def concat(values: list) -> Value:
    """The vector of the entries of vectors and scalars (a scalar stands for a (B, 1) column)."""
    values = [as_value(v) for v in values]
    if any(len(v.shape) > 1 for v in values):
        raise Unsupported("concatenating matrices")
    if len({v.batched for v in values}) > 1:
        raise Unsupported("concatenating a weight with values per example")
    size = sum(v.shape[0] if v.shape else 1 for v in values)
    return Value(f"concat({', '.join(v.text for v in values)})", (size,), values[0].batched, ATOM)


def transpose(a: Value) -> Value:
    if len(a.shape) != 2 or a.batched:
        raise Unsupported("a transpose of anything but a weight matrix (it would mix examples or axes)")
    return replace(a, transposed=not a.transposed)


def product(a: Value, b: Value) -> Value:
    """The model's `a @ b` in the language, with the example axis of `a` (a batch of row vectors)."""
    if a.batched and b.batched:
        raise Unsupported("a product of two values that both depend on the inputs mixes examples")
    if a.batched and len(a.shape) == 1 and len(b.tshape) == 2 and b.tshape[0] == a.shape[0]:
        if b.transposed:          # x @ W.t() is W @ x
            return Value(f"{wrap(b, PRODUCT)} @ {wrap(a, PRODUCT + 1)}", (b.shape[0],), True, PRODUCT)
        return Value(f"{wrap(a, PRODUCT)} @ {wrap(b, PRODUCT + 1)}", (b.shape[1],), True, PRODUCT)
    if a.batched and len(a.shape) == 1 and b.shape == a.shape:
        return Value(f"{wrap(a, PRODUCT)} @ {wrap(b, PRODUCT + 1)}", (), True, PRODUCT)
    if not a.batched and not a.transposed and not b.transposed and len(a.shape) == 2 and b.shape \
            and a.shape[1] == b.shape[0] and not b.batched:
        return Value(f"{wrap(a, PRODUCT)} @ {wrap(b, PRODUCT + 1)}", a.shape[:1] + b.shape[1:], False, PRODUCT)
    raise Unsupported(f"a matrix product of shapes {list(a.tshape)}{' (per example)' if a.batched else ''} and "
                      f"{list(b.tshape)}{' (per example)' if b.batched else ''}")


def batch_norm(x: Value, weight, bias, mean: Value, var: Value, eps: float) -> Value:
    """Eval-mode batch norm: an affine map with the running statistics as constants."""
    v = binary("/", binary("-", x, mean), call("sqrt", binary("+", var, number(eps))))
    if weight is not None:
        v = binary("*", weight, v)
    if bias is not None:
        v = binary("+", v, bias)
    return v


# -- names ---------------------------------------------------------------------------------------------
def sanitise(key: str) -> str:
    """A state_dict key as a `.net` name (issue 15): other characters become `_`, a leading digit gets `p_`.

    >>> sanitise("layers.0.weight"), sanitise("0.weight")
    ('layers_0_weight', 'p_0_weight')
    """
    name = re.sub(r"[^A-Za-z0-9_]", "_", key) or "v"
    return "p_" + name if name[0].isdigit() else name


class Namer:
    """Hands out unique names: the wanted one, else with a numeric suffix (`_1`, `_2`, ...)."""

    def __init__(self, reserved=()):
        self.used: set[str] = set(KEYWORDS) | set(reserved)

    def take(self, wanted: str) -> str:
        name, k = wanted, 0
        while name in self.used:
            k += 1
            name = f"{wanted}_{k}"
        self.used.add(name)
        return name


def builtin_names() -> set[str]:
    from ..atoms import PARAMETRIC_ATOMS, REDUCTIONS, SCALAR_ATOMS
    from ..graph import CONCAT

    return set(SCALAR_ATOMS) | set(REDUCTIONS) | set(PARAMETRIC_ATOMS) | {CONCAT}


@dataclass
class Imported:
    """What an importer read: the `.net` text, the arrays keyed by `.net` names, and the name mapping."""

    text: str
    arrays: dict[str, np.ndarray]
    mapping: list[tuple[str, str, str]]
    notes: list[str]

    def network(self, file: str = "<imported>"):
        from ..graph import load_text

        return load_text(self.text, file)


# -- the file ------------------------------------------------------------------------------------------
@dataclass
class Line:
    name: str
    text: str
    comment: str = ""


@dataclass
class NetText:
    """A `.net` file being written: header, declarations, lines and outputs; and the arrays of its params."""

    header: list[str]
    namer: Namer = field(default_factory=lambda: Namer(builtin_names()))
    declarations: list[str] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    mapping: list[tuple[str, str, str]] = field(default_factory=list)   # (kind, source name, .net name)
    constraints: dict[str, str] = field(default_factory=dict)           # const name -> e.g. ">= 0"
    notes: list[str] = field(default_factory=list)

    def declare(self, kind: str, source: str, wanted: str, shape: tuple, value: np.ndarray | None = None,
                taken: bool = False) -> Value:
        """Declare a variable named `wanted` (or, with `taken`, exactly `wanted`: reserved earlier)."""
        name = wanted if taken else self.namer.take(wanted)
        self.declarations.append((kind, name, tuple(shape)))
        self.mapping.append((kind, source, name))
        if value is not None:
            self.arrays[name] = np.asarray(value, dtype=np.float64)
        return Value(name, tuple(shape), kind == "input")

    def assign(self, wanted: str, v: Value, comment: str = "") -> Value:
        """A line `NAME = TEXT` for a value that depends on the inputs; the name then stands for it."""
        name = self.namer.take(wanted)
        self.lines.append(Line(name, v.text, comment))
        return Value(name, v.shape, v.batched, ATOM, v.transposed)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def text(self) -> str:
        out = [f"# {h}" for h in self.header] + [f"# note: {n}" for n in self.notes] + [""]
        order = {"input": 0, "param": 1, "const": 2}
        for kind, name, shape in sorted(self.declarations, key=lambda d: order[d[0]]):
            dims = f"[{', '.join(map(str, shape))}]" if shape else ""
            bound = f" {self.constraints[name]}" if name in self.constraints else ""
            out.append(f"{kind:<6} {name}{dims}{bound}")
        out.append("")
        width = max((len(line.name) for line in self.lines), default=0)
        for line in self.lines:
            tail = f"   # {line.comment}" if line.comment else ""
            out.append(f"{line.name:<{width}} = {line.text}{tail}")
        out += ["", "output " + ", ".join(self.outputs), ""]
        return "\n".join(out)
