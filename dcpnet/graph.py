"""The expression DAG: nodes with shapes in topological order, built from the syntax tree.

The semantic pass checks everything the grammar cannot: names defined once and before use, shapes,
arity and constant arguments of built-ins, check targets and variables, well-formed constraints. Equal
subexpressions become one node (hash-consing), so a param tied across layers is one leaf.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from . import syntax as st
from .atoms import PARAMETRIC_ATOMS, REDUCTIONS, SCALAR_ATOMS, ScalarAtom, power
from .collector import gc_paused
from .errors import DcpnetError, Diagnostic, SourceText, did_you_mean
from .lattice import Interval, enclose

Shape = tuple[int, ...]

# Node operations. `attrs` holds what the op needs beyond its arguments:
#   var (name,)  const (value, exact)  add sub mul div matmul neg ()  index (i,)  slice (start, stop)  concat ()
#   (a const's value is the nearest double, for the float evaluator; exact the literal as written, a Fraction)
#   scalar (key,) with key ("relu",), ("power", p), ("leaky_relu", a) or ("user", name)
#   reduce (name,) for sum, max, norm2, quad_over_lin, maximum, minimum, ...
BINARY_OPS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "@": "matmul"}
_PRECEDENCE = {"add": 1, "sub": 1, "mul": 2, "div": 2, "matmul": 2}
_SYMBOL = {v: k for k, v in BINARY_OPS.items()}
CONCAT = "concat"             # the one built-in that is neither elementwise nor a reduction
TEXT_LIMIT = 120
MAX_ENTRIES = 10**9          # per array: larger shapes are surely typos, and no evaluator could hold them


@dataclass(eq=False)
class Node:
    id: int
    op: str
    args: tuple[int, ...]
    shape: Shape
    attrs: tuple
    text: str                    # source-like text, for reports
    line: int = 0
    col: int = 0
    names: list[str] = field(default_factory=list)   # the assignments bound to this node
    precedence: int = 9          # of `text`, to parenthesise it inside a larger expression

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def label(self) -> str:
        """The name a reader knows this node by: its first assigned name, else its text."""
        return self.names[0] if self.names else self.text


@dataclass(frozen=True)
class Variable:
    name: str
    kind: str                    # "input", "param" or "const" (a constant: never a variable of a check)
    shape: Shape
    bounds: Interval             # the declared constraint, rounded outward (the whole line when none)
    node: int
    line: int
    col: int
    exact: tuple = (None, None)  # the bounds as the decimals written (Fraction, or None where infinite)

    def admits(self, value: Fraction) -> bool:
        """True when an exact value satisfies the declared constraint as written (0.1 is one tenth)."""
        lo, hi = self.exact
        return (lo is None or value >= lo) and (hi is None or value <= hi)


@dataclass
class Network:
    source: SourceText
    nodes: list[Node] = field(default_factory=list)
    variables: dict[str, Variable] = field(default_factory=dict)
    names: dict[str, int] = field(default_factory=dict)        # every name → its node
    outputs: list[str] = field(default_factory=list)
    checks: list[st.Check] = field(default_factory=list)
    atom_defs: dict[str, st.AtomDef] = field(default_factory=dict)
    user_atoms: dict[str, ScalarAtom] = field(default_factory=dict)   # derived on first use (sympy)
    # values of the constants fixed to known arrays (`check --params`, see dcpnet/fixed.py); the analysis
    # reads their ranges from `variables` and the refuter uses exactly these values
    fixed: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"<Network {self.source.file}: {len(self.inputs)} inputs, {len(self.params)} params, "
                f"{len(self.nodes)} nodes; outputs {', '.join(self.outputs) or 'none'}>")

    @property
    def inputs(self) -> list[str]:
        return [v.name for v in self.variables.values() if v.kind == "input"]

    @property
    def params(self) -> list[str]:
        return [v.name for v in self.variables.values() if v.kind == "param"]

    @property
    def consts(self) -> list[str]:
        return [v.name for v in self.variables.values() if v.kind == "const"]

    def node(self, name: str) -> Node:
        return self.nodes[self.names[name]]

    def ancestors(self, root: int) -> list[int]:
        """Ids of the nodes `root` depends on, itself included, in topological (id) order."""
        seen, stack = {root}, [root]
        while stack:
            for a in self.nodes[stack.pop()].args:
                if a not in seen:
                    seen.add(a)
                    stack.append(a)
        return sorted(seen)

    def resolve_wrt(self, names: list[str]) -> list[str]:
        """Expand `inputs` / `params` into variable names, keeping order and dropping repeats."""
        out: list[str] = []
        for n in names:
            for v in self.inputs if n == "inputs" else self.params if n == "params" else [n]:
                if v not in out:
                    out.append(v)
        return out

    def scalar_atom(self, key: tuple) -> ScalarAtom:
        """The record for an elementwise atom key; user atoms are derived on first use (sympy)."""
        kind = key[0]
        if kind == "power":
            return power(key[1])
        if kind in PARAMETRIC_ATOMS:
            return PARAMETRIC_ATOMS[kind](key[1])
        if kind == "user":
            from .symbolic import user_atom  # sympy is imported only for files that define atoms

            return user_atom(self, key[1])
        return SCALAR_ATOMS[kind]


def declared_range(d: st.Decl) -> Interval:
    """The declared constraint as an outward-rounded interval: it holds every real the decimals admit."""
    lo = enclose(d.lo_exact).lo if d.lo_exact is not None else d.lo
    hi = enclose(d.hi_exact).hi if d.hi_exact is not None else d.hi
    return Interval(lo, hi)


def const_range(node: Node) -> Interval:
    """A constant node's range: the outward-rounded enclosure of the literal as written.

    >>> const_range(load_text("input x\\ny = x * 0.1\\n").nodes[1])
    Interval(lo=0.09999999999999999, hi=0.1)
    """
    return enclose(const_exact(node))


def const_exact(node: Node) -> Fraction:
    """A constant node's exact value: the literal as written, or for a constant the library made (a rewrite's
    folded number has attrs (value,)) the decimal its double prints as, as `rewrite.literal` reads it."""
    return node.attrs[1] if len(node.attrs) > 1 and node.attrs[1] is not None else Fraction(repr(node.attrs[0]))


def build(program: st.Program) -> Network:
    """Check a parsed program and build its DAG; raises DcpnetError listing every problem found."""
    with gc_paused():
        return _Builder(program).run()


def load_text(text: str, file: str = "<input>") -> Network:
    """Parse and build in one step.

    >>> net = load_text("input x[3]\\ny = sum(relu(x))\\n")
    >>> net.node("y").shape, net.node("y").text
    ((), 'sum(relu(x))')
    """
    return build(st.parse(text, file))


def load(path: str) -> Network:
    """Read and build a `.net` file. A file that cannot be read, or is not UTF-8 text, is bad input too:
    DcpnetError at 1:1, or at the line and column of the first byte that is not UTF-8."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise DcpnetError(Diagnostic(f"cannot read the file: {err.strerror or err}", str(path), 1, 1)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        before = data[:err.start]
        line_start = before.rfind(b"\n") + 1
        col = len(before[line_start:].decode("utf-8", "replace")) + 1
        source = SourceText(data.decode("utf-8", "replace"), str(path))
        raise source.error(f"the file is not UTF-8 text: byte 0x{data[err.start]:02x} cannot be decoded",
                           before.count(b"\n") + 1, col) from None
    return load_text(text, str(path))


class _Poisoned(Exception):
    """An expression with an error already reported: stop building it without reporting again."""


class _Builder:
    def __init__(self, program: st.Program):
        self.program = program
        self.net = Network(program.source)
        self.errors: list[Diagnostic] = []
        self.index: dict[tuple, int] = {}
        self.ranges: dict[tuple, Interval] = {}  # the declared range of each good constraint written
        self.fine_shapes: set[Shape] = set()      # the declared shapes found good
        self.poisoned: set[str] = set()          # names whose definition failed (already reported)
        self.poisoned_atoms: set[str] = set()
        self.defined_at: dict[str, int] = {}
        # every name the program defines, and declares, before or after this point: only error messages
        # need them, so they are made on first need (see `defined_anywhere`, `declared_anywhere`)
        self.defined_names: set[str] | None = None
        self.declared_names: set[str] | None = None

    def defined_anywhere(self, name: str) -> bool:
        if self.defined_names is None:
            kinds = (st.Assign, st.Decl, st.AtomDef)
            self.defined_names = {s.name for s in self.program.statements if isinstance(s, kinds)}
        return name in self.defined_names

    def declared_anywhere(self, name: str) -> bool:
        if self.declared_names is None:
            self.declared_names = {s.name for s in self.program.statements if isinstance(s, st.Decl)}
        return name in self.declared_names

    # -- driver ------------------------------------------------------------------------------------
    def run(self) -> Network:
        last_assigned = None
        for stmt in self.program.statements:
            rule = _STATEMENT.get(stmt.__class__)
            if rule is not None:
                rule(self, stmt)
            if stmt.__class__ is st.Assign:
                last_assigned = stmt.name
        if not self.net.outputs and last_assigned and last_assigned not in self.poisoned:
            self.net.outputs = [last_assigned]
        if self.errors:
            raise DcpnetError(self.errors)
        return self.net

    def fail(self, message: str, line: int, col: int) -> None:
        self.errors.append(self.net.source.diagnostic(message, line, col))

    def fresh_name(self, name: str, pos: st.Pos) -> bool:
        if name in self.defined_at:
            where = self.defined_at[name]
            self.fail(f"`{name}` is already defined (line {where}); names are assigned once", pos.line, pos.col)
            return False
        if name in ("inputs", "params"):
            self.fail(f"`{name}` is reserved: it names a group of variables in checks", pos.line, pos.col)
            return False
        return True

    # -- statements --------------------------------------------------------------------------------
    def declare(self, d: st.Decl) -> None:
        if not self.fresh_name(d.name, d.pos):
            return
        self.defined_at[d.name] = d.pos.line
        bounds = self.checked_range(d) if self.shape_ok(d) else None
        if bounds is None:
            self.poisoned.add(d.name)
            return
        node = self.new_node("var", (), d.shape, (d.name,), d.name, d.pos.line, d.pos.col)   # no other has its name
        node.names.append(d.name)
        self.net.variables[d.name] = Variable(d.name, d.kind, d.shape, bounds, node.id, d.pos.line, d.pos.col,
                                              (d.lo_exact, d.hi_exact))
        self.net.names[d.name] = node.id

    def checked_range(self, d: st.Decl) -> Interval | None:
        """`declared_range(d)`, or None where the constraint is bad (reported). A deep network repeats a few
        constraints, so each distinct one is checked and made once."""
        written = (d.constraint, d.lo, d.hi, d.lo_exact, d.hi_exact)
        bounds = self.ranges.get(written)
        if bounds is None and self.constraint_ok(d):
            bounds = self.ranges[written] = declared_range(d)
        return bounds

    def shape_ok(self, d: st.Decl) -> bool:
        if d.shape in self.fine_shapes:          # checked before: a deep network repeats a few shapes
            return True
        if min(d.shape, default=1) > 0 and math.prod(d.shape) <= MAX_ENTRIES:   # the usual case, at once
            self.fine_shapes.add(d.shape)
            return True
        where = list(d.size_pos) + [d.shape_pos or d.pos] * len(d.shape)
        for n, p in zip(d.shape, where):
            if n <= 0:
                self.fail(f"sizes must be positive integers, got {n} in {list(d.shape)}", p.line, p.col)
                return False
        if math.prod(d.shape) > MAX_ENTRIES:
            p = d.shape_pos or d.pos
            self.fail(f"`{d.name}` is too large: {_shape_text(d.shape)} has more than {MAX_ENTRIES:.0e} entries",
                      p.line, p.col)
            return False
        return True

    def constraint_ok(self, d: st.Decl) -> bool:
        if not d.constraint:                     # no bounds written: the whole line
            return True
        lo_pos = d.constraint_pos or d.pos
        hi_pos = d.hi_pos or lo_pos
        written = {">=": [(d.lo, lo_pos)], "<=": [(d.hi, lo_pos)], "in": [(d.lo, lo_pos), (d.hi, hi_pos)]}
        for bound, p in written.get(d.constraint, []):
            if not math.isfinite(bound):
                self.fail(f"the bound {_number_words(bound)}", p.line, p.col)
                return False
        if d.lo > d.hi or (d.lo_exact is not None and d.hi_exact is not None and d.lo_exact > d.hi_exact):
            self.fail(f"empty constraint: in [{d.lo:g}, {d.hi:g}] the lower bound exceeds the upper one",
                      lo_pos.line, lo_pos.col)
            return False
        return True

    def assign(self, a: st.Assign) -> None:
        if not self.fresh_name(a.name, a.pos):
            return
        self.defined_at[a.name] = a.pos.line
        try:
            node = self.expression(a.expr)
        except _Poisoned:
            self.poisoned.add(a.name)
            return
        node.names.append(a.name)
        self.net.names[a.name] = node.id

    def define_atom(self, a: st.AtomDef) -> None:
        if a.name in SCALAR_ATOMS or a.name in REDUCTIONS or a.name in PARAMETRIC_ATOMS or a.name == CONCAT:
            self.fail(f"`{a.name}` is a built-in function and cannot be redefined", a.pos.line, a.pos.col)
            return
        if not self.fresh_name(a.name, a.pos):
            return
        self.defined_at[a.name] = a.pos.line
        if self.atom_body_ok(a):
            self.net.atom_defs[a.name] = a
        else:
            self.poisoned_atoms.add(a.name)

    def atom_body_ok(self, a: st.AtomDef) -> bool:
        """The body is a scalar formula in the argument: numbers, + - * / ^, scalar functions."""
        before = len(self.errors)
        for e in _walk(a.body):
            if isinstance(e, st.Name) and e.id != a.arg:
                self.fail(f"unknown name `{e.id}` in atom `{a.name}`: its body may use only its argument "
                          f"`{a.arg}`{did_you_mean(e.id, [a.arg])}", e.line, e.col)
            elif isinstance(e, st.Num) and not math.isfinite(e.value):
                self.fail(f"the number {_number_words(e.value)}", e.line, e.col)
            elif isinstance(e, st.Pow) and not math.isfinite(e.exponent):
                self.fail(f"the exponent {_number_words(e.exponent)}", e.line, e.col)
            elif isinstance(e, st.Pow) and _rounds_onto_integer(e.exponent, e.exponent_exact):
                self.fail(_ROUNDS_ONTO.format(what="exponent", value=e.exponent, kind="an integer"), e.line, e.col)
            elif isinstance(e, st.BinOp) and e.op == "@":
                self.fail(f"`@` in atom `{a.name}`: an atom is a scalar function", e.line, e.col)
            elif isinstance(e, (st.Index, st.Slice)):
                self.fail(f"indexing in atom `{a.name}`: an atom is a scalar function", e.line, e.col)
            elif isinstance(e, st.Call):
                self.atom_call_ok(a, e)
        if len(self.errors) == before:
            self.atom_constants_ok(a)
        return len(self.errors) == before

    def atom_constants_ok(self, a: st.AtomDef) -> None:
        """Each constant part of a body (no argument in it) must be a finite real: `log(-1)` or `(-8)^0.3`
        is bad input, reported at the constant, not a complex number inside the analysis."""
        import mpmath

        from .body import Body, Undefined

        def problem(e) -> str | None:
            try:
                with mpmath.workdps(30):
                    Body.of_constant(self.net.atom_defs, e).mp(mpmath.mpf(0))
            except Undefined as err:
                return str(err)
            return None

        for root in _constant_roots(a.body):
            if problem(root) is None:
                continue
            # report the innermost part that fails: its children are all finite reals
            culprit = next(e for e in reversed(list(_walk(root))) if not isinstance(e, st.Num) and problem(e))
            at = _start(culprit)
            self.fail(f"`{_source_text(culprit)}` in atom `{a.name}` is not a finite real number ({problem(culprit)})",
                      at.line, at.col)

    def atom_call_ok(self, a: st.AtomDef, e: st.Call) -> None:
        f, n = e.func, len(e.args)
        if f == a.name:
            self.fail(f"atom `{f}` calls itself: an atom may use only built-ins and earlier atoms", e.line, e.col)
        elif not self.scalar_callable(f):
            known = [*SCALAR_ATOMS, *PARAMETRIC_ATOMS, "maximum", "minimum", *self.net.atom_defs]
            what = "is not a scalar function" if f in REDUCTIONS else "is not defined"
            self.fail(f"`{f}` {what}{did_you_mean(f, known)}", e.line, e.col)
        elif f in ("maximum", "minimum"):
            if n < 2:
                self.fail(f"`{f}` needs at least two arguments, got {n}", e.line, e.col)
        elif f in PARAMETRIC_ATOMS:
            if n != 2:
                self.fail(f"`{f}` takes 2 arguments, got {n}", e.line, e.col)
            elif not isinstance(e.args[1], st.Num):
                self.fail(f"the second argument of `{f}` must be a number", e.args[1].line, e.args[1].col)
            elif _slope_rounds_onto_class_edge(e.args[1]):
                c = e.args[1]
                self.fail(_ROUNDS_ONTO.format(what="slope", value=c.value, kind="0 or 1"), c.line, c.col)
        elif n != 1:
            self.fail(f"`{f}` takes 1 argument, got {n}", e.line, e.col)

    def scalar_callable(self, func: str) -> bool:
        return func in SCALAR_ATOMS or func in PARAMETRIC_ATOMS or func in self.net.atom_defs \
            or func in self.poisoned_atoms or func in ("maximum", "minimum")

    def output(self, o: st.Output) -> None:
        for name, pos in o.names:
            if self.known_name(name, pos) and name not in self.net.outputs:
                self.net.outputs.append(name)

    def check(self, c: st.Check) -> None:
        ok = self.known_name(c.target, c.target_pos)
        for name, pos in c.wrt:
            if name in self.net.variables and self.net.variables[name].kind == "const":
                ok = False
                self.fail(f"`{name}` is a constant: checks are taken in inputs and params", pos.line, pos.col)
                continue
            if name in ("inputs", "params") or name in self.net.variables:
                continue
            ok = False
            if name in self.poisoned and self.declared_anywhere(name):  # its declaration was reported already
                continue
            if name in self.net.names or name in self.poisoned:
                self.fail(f"`{name}` is not an input or param: checks are taken in variables "
                          f"(or `inputs`, `params`)", pos.line, pos.col)
            elif self.defined_anywhere(name):
                self.fail(f"unknown variable `{name}` (it is declared later: names must be defined before use)",
                          pos.line, pos.col)
            else:
                choices = [*self.net.variables, "inputs", "params"]
                self.fail(f"unknown variable `{name}`{did_you_mean(name, choices)}", pos.line, pos.col)
        if ok:
            self.net.checks.append(c)

    def known_name(self, name: str, pos: st.Pos) -> bool:
        if name in self.net.names:
            return True
        if name not in self.poisoned:
            self.fail(self.unknown_message(name), pos.line, pos.col)
        return False

    def unknown_message(self, name: str) -> str:
        if name in self.net.atom_defs or name in SCALAR_ATOMS or name in REDUCTIONS or name in PARAMETRIC_ATOMS \
                or name in self.poisoned_atoms:
            return f"`{name}` is a function; call it as `{name}(…)`"
        if self.defined_anywhere(name):
            return f"unknown name `{name}` (it is defined later: names must be defined before use)"
        return f"unknown name `{name}`{did_you_mean(name, self.net.names)}"

    # -- expressions (iterative post-order: deep nesting costs no stack) -----------------------------
    def expression(self, root: st.Expr) -> Node:
        names, nodes = self.net.names, self.net.nodes
        done: list[Node] = []                    # the values of finished subexpressions, a stack
        todo: list = [root]                      # expressions to expand, and (expression, arity) to make
        while todo:
            e = todo.pop()
            kind = e.__class__
            if kind is tuple:                    # its operands are the last `arity` values done
                e, arity = e
                args = done[-arity:]
                del done[-arity:]
                done.append(_MAKE[e.__class__](self, e, args))
            elif kind is st.Name and e.id in names:   # the commonest operand, looked up here
                done.append(nodes[names[e.id]])
            elif kind is st.BinOp:               # the commonest operation, expanded here
                todo += ((e, 2), e.right, e.left)
            else:
                kids = _OPERANDS[kind](e)
                if kids:
                    todo.append((e, len(kids)))
                    todo.extend(reversed(kids))
                else:
                    done.append(_MAKE[kind](self, e, ()))
        return done[0]

    def make_number(self, e: st.Num, args) -> Node:
        if not math.isfinite(e.value):
            self.fail(f"the number {_number_words(e.value)}", e.line, e.col)
            raise _Poisoned
        exact = e.exact if e.exact is not None else Fraction(e.value)
        return self.intern("const", (), (), (e.value, exact), f"{e.value:g}", e.line, e.col)

    def make_neg(self, e: st.Neg, args) -> Node:
        return self.intern("neg", args, args[0].shape, (), f"-{_wrap(args[0], 3)}", e.line, e.col, 3)

    def lookup(self, e: st.Name, args=()) -> Node:
        if e.id in self.net.names:
            return self.net.nodes[self.net.names[e.id]]
        if e.id in self.poisoned:
            raise _Poisoned
        self.fail(self.unknown_message(e.id), e.line, e.col)
        raise _Poisoned

    def make_power(self, e: st.Pow, args) -> Node:
        base, p = args[0], e.exponent
        if not math.isfinite(p):
            self.fail(f"the exponent {_number_words(p)}", e.line, e.col)
            raise _Poisoned
        if _rounds_onto_integer(p, e.exponent_exact):
            self.fail(_ROUNDS_ONTO.format(what="exponent", value=p, kind="an integer"), e.line, e.col)
            raise _Poisoned
        return self.intern("scalar", (base,), base.shape, ("power", p), f"{_wrap(base, 5)}^{p:g}",
                           e.line, e.col, 4)

    def make_index(self, e: st.Index, args) -> Node:
        base = args[0]
        if len(base.shape) != 1:
            what = "a scalar" if not base.shape else f"a matrix {list(base.shape)}"
            self.fail(f"indexing needs a vector, but `{base.label}` is {what}", e.line, e.col)
            raise _Poisoned
        if not 0 <= e.index < base.shape[0]:
            self.fail(f"index {e.index} is out of range for `{base.label}` of size {base.shape[0]} "
                      f"(indices count from 0)", e.line, e.index_col or e.col + 1)
            raise _Poisoned
        return self.intern("index", (base,), (), (e.index,), f"{_wrap(base, 5)}[{e.index}]", e.line, e.col)

    def make_binary(self, e: st.BinOp, args) -> Node:
        a, b = args
        op = BINARY_OPS[e.op]
        shape = matmul_shape(a.shape, b.shape) if op == "matmul" else broadcast_shape(a.shape, b.shape)
        if shape is None:
            how = "`@` needs [m,n]@[n], [m,n]@[n,k], [n]@[n,k] or [n]@[n]" if op == "matmul" else \
                f"`{e.op}` needs equal shapes or a scalar"
            self.fail(f"shape mismatch: {_shape_text(a.shape)} {e.op} {_shape_text(b.shape)}; {how}",
                      e.line, e.col)
            raise _Poisoned
        if math.prod(shape) > MAX_ENTRIES:
            self.fail(f"the result {_shape_text(shape)} of `{e.op}` has more than {MAX_ENTRIES:.0e} entries",
                      e.line, e.col)
            raise _Poisoned
        p = _PRECEDENCE[op]
        text = f"{_wrap(a, p)} {e.op} {_wrap(b, p + 1)}"
        return self.intern(op, (a, b), shape, (), text, e.line, e.col, p)

    def make_call(self, e: st.Call, args: list[Node]) -> Node:
        f = e.func
        text = f"{f}({', '.join(_wrap(a, 0) for a in args)})"
        if f in SCALAR_ATOMS or f in self.net.atom_defs:
            self.arity(e, args, 1)
            key = (f,) if f in SCALAR_ATOMS else ("user", f)
            return self.intern("scalar", args, args[0].shape, key, text, e.line, e.col)
        if f in PARAMETRIC_ATOMS:
            self.arity(e, args, 2)
            c = e.args[1]
            if not isinstance(c, st.Num):
                self.fail(f"the second argument of `{f}` must be a number", c.line, c.col)
                raise _Poisoned
            if _slope_rounds_onto_class_edge(c):
                self.fail(_ROUNDS_ONTO.format(what="slope", value=c.value, kind="0 or 1"), c.line, c.col)
                raise _Poisoned
            return self.intern("scalar", args[:1], args[0].shape, (f, c.value), text, e.line, e.col)
        if f in REDUCTIONS:
            return self.make_reduction(e, args, text)
        if f == CONCAT:
            return self.make_concat(e, args, text)
        if f in self.poisoned_atoms:  # its definition was reported already
            raise _Poisoned
        known = [*SCALAR_ATOMS, *PARAMETRIC_ATOMS, *REDUCTIONS, CONCAT, *self.net.atom_defs]
        if f in self.net.names:
            self.fail(f"`{f}` is a value, not a function", e.line, e.col)
        else:
            self.fail(f"unknown function `{f}`{did_you_mean(f, known)}", e.line, e.col)
        raise _Poisoned

    def make_slice(self, e: st.Slice, args) -> Node:
        """`v[i:j]`: entries i, ..., j - 1 of a vector (Python's half-open range, counting from 0)."""
        base = args[0]
        if len(base.shape) != 1:
            what = "a scalar" if not base.shape else f"a matrix {list(base.shape)}"
            self.fail(f"slicing needs a vector, but `{base.label}` is {what}", e.line, e.col)
            raise _Poisoned
        if not 0 <= e.start < e.stop <= base.shape[0]:
            self.fail(f"slice {e.start}:{e.stop} is out of range for `{base.label}` of size {base.shape[0]} "
                      f"(it needs 0 <= i < j <= {base.shape[0]})", e.line, e.stop_col or e.col + 1)
            raise _Poisoned
        if (e.start, e.stop) == (0, base.shape[0]):
            return base
        return self.intern("slice", (base,), (e.stop - e.start,), (e.start, e.stop),
                           f"{_wrap(base, 5)}[{e.start}:{e.stop}]", e.line, e.col)

    def make_concat(self, e: st.Call, args: list[Node], text: str) -> Node:
        """`concat(u, v, ...)`: the vector of the entries of its arguments (vectors, or scalars as one entry)."""
        for a in args:
            if len(a.shape) > 1:
                self.fail(f"`concat` joins vectors and scalars, but `{a.label}` is a matrix {list(a.shape)}",
                          e.line, e.col)
                raise _Poisoned
        if not args:
            self.fail("`concat` needs at least one argument", e.line, e.col)
            raise _Poisoned
        size = sum(a.size for a in args)
        return self.intern("concat", args, (size,), (), text, e.line, e.col)

    def make_reduction(self, e: st.Call, args: list[Node], text: str) -> Node:
        kind = REDUCTIONS[e.func].arity
        if kind == "many":
            if len(args) < 2:
                self.fail(f"`{e.func}` needs at least two arguments, got {len(args)}", e.line, e.col)
                raise _Poisoned
            shape: Shape | None = ()
            for a in args:
                shape = broadcast_shape(shape, a.shape) if shape is not None else None
            if shape is None:
                shapes = ", ".join(_shape_text(a.shape) for a in args)
                self.fail(f"shape mismatch in `{e.func}`: {shapes}; arguments need equal shapes or scalars",
                          e.line, e.col)
                raise _Poisoned
            return self.intern("reduce", args, shape, (e.func,), text, e.line, e.col)
        if kind == "quad_over_lin":
            self.arity(e, args, 2)
            if args[1].shape:
                self.fail(f"the second argument of `quad_over_lin` must be a scalar, got "
                          f"{_shape_text(args[1].shape)}", e.line, e.col)
                raise _Poisoned
            return self.intern("reduce", args, (), (e.func,), text, e.line, e.col)
        self.arity(e, args, 1)
        return self.intern("reduce", args, (), (e.func,), text, e.line, e.col)

    def arity(self, e: st.Call, args: list[Node], n: int) -> None:
        if len(args) != n:
            self.fail(f"`{e.func}` takes {n} argument{'s' if n > 1 else ''}, got {len(args)}", e.line, e.col)
            raise _Poisoned

    # -- hash-consing --------------------------------------------------------------------------------
    def intern(self, op, args, shape, attrs, text, line, col, precedence=9) -> Node:
        ids = tuple([a.id for a in args]) if len(args) != 2 else (args[0].id, args[1].id)  # the commonest, directly
        key = (op, ids, attrs)
        found = self.index.get(key)
        if found is not None:
            return self.net.nodes[found]
        node = self.new_node(op, ids, shape, attrs, text, line, col, precedence)
        self.index[key] = node.id
        return node

    def new_node(self, op, ids, shape, attrs, text, line, col, precedence=9) -> Node:
        nodes = self.net.nodes
        if len(text) > TEXT_LIMIT:
            text = text[:TEXT_LIMIT - 1] + "…"
        node = Node(len(nodes), op, ids, tuple(shape), attrs, text, line, col, [], precedence)
        nodes.append(node)
        return node


# -- shape rules ----------------------------------------------------------------------------------------
def broadcast_shape(a: Shape, b: Shape) -> Shape | None:
    """Scalars broadcast; otherwise the shapes must be equal."""
    if not a:
        return b
    if not b or a == b:
        return a
    return None


def matmul_shape(a: Shape, b: Shape) -> Shape | None:
    """[m,n]@[n] → [m], [m,n]@[n,k] → [m,k], [n]@[n,k] → [k], [n]@[n] → scalar."""
    if not a or not b or len(a) > 2 or len(b) > 2 or a[-1] != b[0]:
        return None
    return a[:-1] + b[1:]


def _shape_text(s: Shape) -> str:
    return "scalar" if not s else "[" + ", ".join(map(str, s)) + "]"


def _wrap(n: Node, outer: int) -> str:
    text = n.label
    return f"({text})" if not n.names and n.precedence < outer else text


# How the builder takes each kind of statement.
_STATEMENT = {st.Decl: _Builder.declare, st.Assign: _Builder.assign, st.AtomDef: _Builder.define_atom,
              st.Output: _Builder.output, st.Check: _Builder.check}

# How the builder makes a node of each kind of expression, from the nodes of its operands (in order).
_MAKE = {st.Num: _Builder.make_number, st.Name: _Builder.lookup, st.Neg: _Builder.make_neg,
         st.Pow: _Builder.make_power, st.Index: _Builder.make_index, st.Slice: _Builder.make_slice,
         st.BinOp: _Builder.make_binary, st.Call: _Builder.make_call}

_OPERANDS = {st.Num: lambda e: (), st.Name: lambda e: (), st.BinOp: lambda e: (e.left, e.right),
             st.Neg: lambda e: (e.operand,), st.Pow: lambda e: (e.base,), st.Index: lambda e: (e.base,),
             st.Slice: lambda e: (e.base,), st.Call: lambda e: e.args}


def _children(e: st.Expr) -> tuple[st.Expr, ...]:
    return _OPERANDS[e.__class__](e)


def _constant_roots(body: st.Expr) -> list:
    """The largest subexpressions without a name in them (calls, powers, sums of numbers), outermost first."""
    has_name: dict[int, bool] = {}
    order = list(_walk(body))
    for e in reversed(order):   # children come after their parents in `_walk`
        has_name[id(e)] = isinstance(e, st.Name) or any(has_name[id(k)] for k in _children(e))
    out, stack = [], [body]
    while stack:
        e = stack.pop()
        if not has_name[id(e)] and not isinstance(e, st.Num):
            out.append(e)
        elif has_name[id(e)]:
            stack.extend(_children(e))
    return out


def _start(e: st.Expr) -> st.Expr:
    """The leftmost part of e, where its text begins (a power's node sits at its `^`)."""
    while isinstance(e, (st.Pow, st.BinOp)):
        e = e.base if isinstance(e, st.Pow) else e.left
    return e


def _source_text(e: st.Expr, inner: bool = False) -> str:
    """A constant part of an atom body, written back (parenthesised where it sits inside another)."""
    if isinstance(e, st.Num):
        return f"({e.value:g})" if e.value < 0 and inner else f"{e.value:g}"
    if isinstance(e, st.Pow):
        return f"{_source_text(e.base, True)}^{e.exponent:g}"
    if isinstance(e, st.Call):
        return f"{e.func}({', '.join(_source_text(x) for x in e.args)})"
    if isinstance(e, st.Neg):
        return f"-{_source_text(e.operand, True)}"
    if isinstance(e, st.BinOp):
        text = f"{_source_text(e.left, True)} {e.op} {_source_text(e.right, True)}"
        return f"({text})" if inner else text
    return "…"


def _walk(e: st.Expr):
    stack = [e]
    while stack:
        x = stack.pop()
        yield x
        stack.extend(_children(x))


# Exponents and slopes are atom parameters: read as the nearest double, which keeps the order of numbers,
# so the curvature class of u^p or leaky_relu(u, a) changes only where rounding lands on an integer
# exponent or on the slopes 0 and 1. Such a literal would prove the class of a different function.
_ROUNDS_ONTO = ("the {what} {value:.17g} as written is not {kind}, but it rounds to {kind} in double precision "
                "(which would change its curvature); write it with fewer digits")


def _rounds_onto_integer(value: float, exact: Fraction | None) -> bool:
    return value.is_integer() and exact is not None and exact != Fraction(value)


def _slope_rounds_onto_class_edge(c: st.Num) -> bool:
    return c.value in (0.0, 1.0) and c.exact is not None and c.exact != Fraction(c.value)


def _number_words(value: float) -> str:
    """Why a literal is unusable: it overflows (inf), or it is undefined or rounds to 0 though nonzero (nan)."""
    if math.isinf(value):
        return f"{value} is not a finite number (the literal overflows double precision)"
    return "nan: undefined, or out of the range of double precision (a nonzero literal that rounds to 0)"
