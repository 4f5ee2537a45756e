"""Parsing `.net` text into a typed syntax tree with source positions. The only module that imports lark.

The grammar is `grammar/dcpnet.lark`. The LALR parser runs the transformer as it reduces, so the tree is
built bottom-up without recursion and a file of 10,000 layers costs no stack.
"""
from __future__ import annotations

import gc
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path

from .errors import DcpnetError, SourceText


# -- expressions ---------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Expr:
    line: int
    col: int


@dataclass(frozen=True, eq=False)
class Num(Expr):
    value: float


@dataclass(frozen=True, eq=False)
class Name(Expr):
    id: str


@dataclass(frozen=True, eq=False)
class Call(Expr):
    func: str
    args: tuple[Expr, ...]


@dataclass(frozen=True, eq=False)
class Index(Expr):
    base: Expr
    index: int
    index_col: int = 0                 # column of the integer (the node's own column is the `[`)


@dataclass(frozen=True, eq=False)
class Neg(Expr):
    operand: Expr


@dataclass(frozen=True, eq=False)
class BinOp(Expr):
    op: str          # one of + - * / @
    left: Expr
    right: Expr


@dataclass(frozen=True, eq=False)
class Pow(Expr):
    base: Expr
    exponent: float


# -- statements ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pos:
    line: int
    col: int


@dataclass(frozen=True)
class Decl:
    kind: str                          # "input" or "param"
    name: str
    shape: tuple[int, ...]
    lo: float
    hi: float
    pos: Pos
    shape_pos: Pos | None = None
    constraint_pos: Pos | None = None  # where the lower bound (or the only bound) is written
    size_pos: tuple[Pos, ...] = ()     # where each size of the shape is written
    hi_pos: Pos | None = None          # where the upper bound of `in [lo, hi]` is written
    constraint: str = ""               # which form was written: "", ">=", "<=" or "in"


@dataclass(frozen=True)
class Assign:
    name: str
    expr: Expr
    pos: Pos


@dataclass(frozen=True)
class AtomDef:
    name: str
    arg: str
    body: Expr
    pos: Pos


@dataclass(frozen=True)
class Output:
    names: tuple[tuple[str, Pos], ...]


@dataclass(frozen=True)
class Check:
    negated: bool
    prop: str                          # convex, concave, affine
    target: str
    target_pos: Pos
    wrt: tuple[tuple[str, Pos], ...]
    pos: Pos


@dataclass
class Program:
    statements: list = field(default_factory=list)
    source: SourceText | None = None


# -- the parser ----------------------------------------------------------------------------------------
MAX_SYNTAX_ERRORS = 20
_BIG_INT_DIGITS = 100      # longer integers are clipped (Python refuses to print ints of > 4300 digits)


def grammar_text() -> str:
    """The grammar, from the installed package data or from the source checkout."""
    packaged = resources.files("dcpnet") / "grammar" / "dcpnet.lark"
    if packaged.is_file():
        return packaged.read_text()
    return (Path(__file__).resolve().parent.parent / "grammar" / "dcpnet.lark").read_text()


def normalise(text: str) -> str:
    """LF line endings (CRLF and lone CR become LF) and no byte-order mark: what the grammar and the
    line numbers of diagnostics both assume."""
    text = text.removeprefix("\ufeff")
    return text.replace("\r\n", "\n").replace("\r", "\n")


@contextmanager
def gc_paused():
    """Pause the cyclic garbage collector while building many small acyclic objects (a large network's
    tokens, syntax nodes and DAG nodes): its passes over them cost a fifth of the time and free nothing."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _pos(tok) -> Pos:
    return Pos(tok.line, tok.column)


def _int(tok) -> int:
    if len(tok) <= _BIG_INT_DIGITS:
        return int(tok)
    digits = tok.lstrip("0") or "0"
    return int(digits) if len(digits) <= _BIG_INT_DIGITS else 10 ** _BIG_INT_DIGITS


def _float(tok) -> float:
    """The literal's value; NaN when it is nonzero but rounds to 0 (1e-400): silently reading 0 there could
    prove a false claim, so the semantic pass reports NaN like an overflow, at the literal."""
    value = float(tok)
    mantissa = str(tok).lower().split("e")[0]
    if value == 0 and any(c in "123456789" for c in mantissa):
        return math.nan
    return value


def _signed(children) -> float:
    sign = -1.0 if len(children) == 2 and children[0] == "-" else 1.0
    return sign * _float(children[-1])


def _power(base: float, exponent: float) -> float:
    """base ** exponent for constant folding; inf on overflow and nan where undefined, never an exception
    (the semantic pass reports a non-finite exponent at its `^`)."""
    try:
        return math.pow(base, exponent)
    except OverflowError:
        return math.inf
    except ValueError:  # a negative base to a fractional power, or 0 to a negative one
        return math.nan


def _make_transformer():
    from lark import Transformer, v_args

    @v_args(inline=False)
    class ToSyntax(Transformer):
        """Binds each grammar alias to the node it builds (called by the parser at each reduction).

        Every callback is total: lark does not wrap exceptions raised here, so a bad number becomes a
        value (inf, nan, a clipped integer) that the semantic pass reports with its position."""

        def program(self, items):
            flat = []
            for st in items:
                flat.extend(st if isinstance(st, list) else [st])
            return Program(flat)

        # declarations
        def declaration(self, items):
            kind, decls = items[0], items[1:]
            return [Decl(str(kind), **d) for d in decls]

        def decl(self, items):
            name = items[0]
            d = {"name": str(name), "shape": (), "lo": -math.inf, "hi": math.inf, "pos": _pos(name)}
            for it in items[1:]:
                d.update(it)
            return d

        def shape(self, items):
            sizes = items[1:]
            return {"shape": tuple(_int(t) for t in sizes), "shape_pos": _pos(items[0]),
                    "size_pos": tuple(_pos(t) for t in sizes)}

        def signed_number(self, items):
            return (_signed(items), _pos(items[0]))

        def at_least(self, items):
            return {"lo": items[0][0], "constraint_pos": items[0][1], "constraint": ">="}

        def at_most(self, items):
            return {"hi": items[0][0], "constraint_pos": items[0][1], "constraint": "<="}

        def between(self, items):
            return {"lo": items[0][0], "hi": items[1][0], "constraint_pos": items[0][1],
                    "hi_pos": items[1][1], "constraint": "in"}

        # definitions
        def assignment(self, items):
            return Assign(str(items[0]), items[1], _pos(items[0]))

        def atom_def(self, items):
            return AtomDef(str(items[0]), str(items[1]), items[2], _pos(items[0]))

        def output(self, items):
            return Output(tuple((str(t), _pos(t)) for t in items))

        def check(self, items):
            negated = len(items) == 4
            prop, target, wrt = items[-3], items[-2], items[-1]
            return Check(negated, str(prop), str(target), _pos(target), wrt, _pos(prop))

        def wrt(self, items):
            return tuple((str(t), _pos(t)) for t in items)

        # expressions
        def binary(self, items):
            left, op, right = items
            return BinOp(op.line, op.column, str(op), left, right)

        def negate(self, items):
            op, operand = items
            if isinstance(operand, Num):  # -2 is a number, so `x^-2` and `-1 * x` read naturally
                return Num(op.line, op.column, -operand.value)
            return Neg(op.line, op.column, operand)

        def power(self, items):
            base, op, exponent = items
            return Pow(op.line, op.column, base, exponent)

        def exponent(self, items):
            sign = -1.0 if items[0] == "-" else 1.0
            rest = items[1:] if getattr(items[0], "type", None) == "SIGN" else items
            value = _float(rest[0])
            if len(rest) == 3:  # base ^ exponent, right-associative
                value = _power(value, rest[2])
            return sign * value

        def call(self, items):
            name, args = items[0], tuple(a for a in items[1:] if a is not None)
            return Call(name.line, name.column, str(name), args)

        def index(self, items):
            base, bracket, idx = items
            return Index(bracket.line, bracket.column, base, _int(idx), idx.column)

        def number(self, items):
            tok = items[0]
            return Num(tok.line, tok.column, _float(tok))

        def name(self, items):
            tok = items[0]
            return Name(tok.line, tok.column, str(tok))

    return ToSyntax()


@lru_cache(maxsize=1)
def _parser():
    from lark import Lark

    options = {"parser": "lalr", "lexer": "contextual", "transformer": _make_transformer(), "maybe_placeholders": False}
    try:  # lark keeps the LALR tables in a temp file keyed by the grammar's hash: ~100 ms less per process
        return Lark(grammar_text(), cache=True, **options)
    except OSError:
        return Lark(grammar_text(), **options)


def parse(text: str, file: str = "<input>") -> Program:
    """Parse `.net` text into a Program; a syntax error raises DcpnetError with one diagnostic per bad line.

    >>> prog = parse("input x, y[2] >= 0\\nz = relu(y) * x\\n")
    >>> [type(s).__name__ for s in prog.statements]
    ['Decl', 'Decl', 'Assign']
    >>> parse("y = (x\\nz = x +\\n", "f.net")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dcpnet.errors.DcpnetError: f.net:1:7: error: unexpected end of line; expected ')'...
    """
    from lark.exceptions import UnexpectedInput

    text = normalise(text)
    source = SourceText(text, file)
    work = text if text.endswith("\n") else text + "\n"
    errors = []
    while len(errors) < MAX_SYNTAX_ERRORS:
        try:
            with gc_paused():
                program = _parser().parse(work)
            break
        except UnexpectedInput as err:
            line, col = _where(err, source)
            errors.append(source.diagnostic(_describe(err, work), line, col))
            # recover: blank the bad line (statements are one line each) and look for more errors
            lines = work.split("\n")
            if not 0 < line <= len(lines) or not lines[line - 1]:
                break
            lines[line - 1] = ""
            work = "\n".join(lines)
    if errors:
        raise DcpnetError(errors)
    program.source = source
    return program


def _where(err, source: SourceText) -> tuple[int, int]:
    """The error's line and column, clamped to the text (lark gives -1 at the end of the input)."""
    line = getattr(err, "line", -1)
    col = getattr(err, "column", -1)
    if not isinstance(line, int) or line < 1:
        line = max(len(source.lines), 1)
        col = len(source.lines[line - 1]) + 1 if source.lines else 1
    if not isinstance(col, int) or col < 1:
        col = 1
    return line, col


_TOKEN_WORDS = {"_NL": "end of line", "$END": "end of file", "NAME": "a name", "NUMBER": "a number",
                "INT": "an integer", "ADD_OP": "'+' or '-'", "MUL_OP": "'*', '/' or '@'", "NEG": "'-'",
                "POW_OP": "'^'", "SIGN": "a sign", "KIND": "'input' or 'param'", "NOT": "'not'",
                "PROPERTY": "'convex', 'concave' or 'affine'", "COMMENT": "a comment"}


@cache
def _token_word(name: str) -> str:
    """How a message names a terminal: its literal text when it has one (`'>='`), else a word."""
    if name in _TOKEN_WORDS:
        return _TOKEN_WORDS[name]
    for t in _parser().terminals:
        if t.name == name and t.pattern.type == "str":
            return f"'{t.pattern.value}'"
    return name.lower()


def _expected(names) -> str:
    words = sorted({_token_word(n) for n in names or () if not n.startswith("__IGNORE")})
    if not words:
        return ""
    if len(words) > 8:
        return "; expected " + ", ".join(words[:8]) + ", …"
    return "; expected " + ", ".join(words)


_KEYWORDS = ("input", "param", "atom", "output", "check")


def _hint(err, text: str) -> str:
    """A sentence for the common mistakes whose bare `expected …` list would puzzle a reader."""
    from .errors import did_you_mean

    expected = set(err.expected or ())
    if expected == {"NUMBER", "SIGN", "LPAR"}:
        return ": the exponent of `^` must be a numeric constant, such as 2, -1 or 0.5"
    if expected and expected <= {"NUMBER", "SIGN"}:
        return ": a bound must be a number (a leading '-' is allowed)"
    if expected == {"EQUAL"}:  # `inpt x`: a misspelled keyword reads as the start of an assignment
        lines, line = text.split("\n"), getattr(err.token, "line", 0) or 0
        words = lines[line - 1].split() if 0 < line <= len(lines) else []
        return did_you_mean(words[0], _KEYWORDS) if words else ""
    return ""


def _describe(err, text: str) -> str:
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

    if isinstance(err, UnexpectedToken):
        tok = err.token
        what = "end of line" if tok.type == "_NL" else "end of file" if tok.type == "$END" else f"'{tok}'"
        return f"unexpected {what}{_expected(err.expected)}{_hint(err, text)}"
    if isinstance(err, UnexpectedCharacters):
        ch = text[err.pos_in_stream] if 0 <= err.pos_in_stream < len(text) else "?"
        shown = repr(ch)[1:-1] if not ch.isprintable() else ch
        return f"unexpected character '{shown}'{_expected(err.allowed)}"
    if isinstance(err, UnexpectedEOF):
        return f"unexpected end of file{_expected(err.expected)}"
    return "syntax error"


__all__ = [
    "Assign",
    "AtomDef",
    "BinOp",
    "Call",
    "Check",
    "DcpnetError",
    "Decl",
    "Expr",
    "Index",
    "Name",
    "Neg",
    "Num",
    "Output",
    "Pos",
    "Pow",
    "Program",
    "normalise",
    "parse",
]
