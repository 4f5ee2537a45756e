"""Parsing `.net` text into a typed syntax tree with source positions. The only module that imports lark.

The grammar is `grammar/dcpnet.lark`. The LALR parser runs the transformer as it reduces, so the tree is
built bottom-up without recursion and a file of 10,000 layers costs no stack.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
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
    constraint_pos: Pos | None = None


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
def grammar_text() -> str:
    """The grammar, from the installed package data or from the source checkout."""
    packaged = resources.files("dcpnet") / "grammar" / "dcpnet.lark"
    if packaged.is_file():
        return packaged.read_text()
    return (Path(__file__).resolve().parent.parent / "grammar" / "dcpnet.lark").read_text()


def _pos(tok) -> Pos:
    return Pos(tok.line, tok.column)


def _number(tok) -> float:
    return float(tok)


def _signed(children) -> float:
    sign = -1.0 if len(children) == 2 and children[0] == "-" else 1.0
    return sign * float(children[-1])


def _make_transformer():
    from lark import Transformer, v_args

    @v_args(inline=False)
    class ToSyntax(Transformer):
        """Binds each grammar alias to the node it builds (called by the parser at each reduction)."""

        def program(self, items):
            return Program(list(items))

        # declarations
        def declaration(self, items):
            kind, decls = items[0], items[1:]
            return [Decl(str(kind), *d) for d in decls]

        def decl(self, items):
            name, shape, constraint = items[0], (), (-math.inf, math.inf, None)
            shape_pos = None
            for it in items[1:]:
                if isinstance(it, tuple) and it and it[0] == "shape":
                    shape, shape_pos = it[1], it[2]
                else:
                    constraint = it
            return (str(name), shape, constraint[0], constraint[1], _pos(name), shape_pos, constraint[2])

        def shape(self, items):
            return ("shape", tuple(int(t) for t in items), _pos(items[0]))

        def signed_number(self, items):
            return (_signed(items), _pos(items[0]))

        def at_least(self, items):
            return (items[0][0], math.inf, items[0][1])

        def at_most(self, items):
            return (-math.inf, items[0][0], items[0][1])

        def between(self, items):
            return (items[0][0], items[1][0], items[0][1])

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
            return BinOp(op.line, op.column, "@" if op == "@" else str(op), left, right)

        def negate(self, items):
            op, operand = items
            if isinstance(operand, Num):  # -2 is a number, so `x^-2` and `-1 * x` read naturally
                return Num(op.line, op.column, -operand.value)
            return Neg(op.line, op.column, operand)

        def power(self, items):
            base, op, exponent = items
            return Pow(op.line, op.column, base, exponent)

        def exponent(self, items):
            return _signed(items)

        def call(self, items):
            name, args = items[0], tuple(a for a in items[1:] if a is not None)
            return Call(name.line, name.column, str(name), args)

        def index(self, items):
            base, idx = items
            return Index(idx.line, idx.column - 1, base, int(idx))

        def number(self, items):
            tok = items[0]
            return Num(tok.line, tok.column, _number(tok))

        def name(self, items):
            tok = items[0]
            return Name(tok.line, tok.column, str(tok))

    return ToSyntax()


@lru_cache(maxsize=1)
def _parser():
    from lark import Lark

    return Lark(grammar_text(), parser="lalr", lexer="contextual", transformer=_make_transformer(),
                maybe_placeholders=False)


def parse(text: str, file: str = "<input>") -> Program:
    """Parse `.net` text into a Program.

    >>> prog = parse("input x\\ny = relu(x)\\n")
    >>> [type(s).__name__ for s in prog.statements]
    ['list', 'Assign']
    """
    from lark.exceptions import UnexpectedInput, VisitError

    source = SourceText(text, file)
    try:
        program = _parser().parse(text if text.endswith("\n") else text + "\n")
    except UnexpectedInput as err:
        raise source.error(_describe(err, text), err.line if err.line > 0 else len(source.lines),
                           err.column if err.column > 0 else 1) from None
    except VisitError as err:  # a transformer callback failed: report the original error
        raise source.error(f"cannot read this statement: {err.orig_exc}", 1, 1) from None
    flat = []
    for st in program.statements:
        flat.extend(st if isinstance(st, list) else [st])
    program.statements = flat
    program.source = source
    return program


_TOKEN_WORDS = {"_NL": "end of line", "$END": "end of file", "NAME": "a name", "NUMBER": "a number",
                "INT": "an integer", "ADD_OP": "'+' or '-'", "MUL_OP": "'*', '/' or '@'", "NEG": "'-'",
                "POW_OP": "'^'", "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'",
                "COMMA": "','", "EQUAL": "'='", "SIGN": "a sign"}


def _describe(err, text: str) -> str:
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

    expected = sorted({_TOKEN_WORDS.get(t, t.lower()) for t in (getattr(err, "expected", None) or ())})
    want = f"; expected {', '.join(expected[:6])}" if expected else ""
    if isinstance(err, UnexpectedToken):
        tok = err.token
        what = "end of line" if tok.type == "_NL" else "end of file" if tok.type == "$END" else f"'{tok}'"
        return f"unexpected {what}{want}"
    if isinstance(err, UnexpectedCharacters):
        ch = text[err.pos_in_stream] if 0 <= err.pos_in_stream < len(text) else "?"
        allowed = sorted({_TOKEN_WORDS.get(t, t.lower()) for t in (err.allowed or ())})
        want = f"; expected {', '.join(allowed[:6])}" if allowed else ""
        return f"unexpected character '{ch}'{want}"
    if isinstance(err, UnexpectedEOF):
        return f"unexpected end of file{want}"
    return "syntax error"


__all__ = ["parse", "Program", "Decl", "Assign", "AtomDef", "Output", "Check", "Expr", "Num",
           "Name", "Call", "Index", "Neg", "BinOp", "Pow", "Pos", "DcpnetError"]
