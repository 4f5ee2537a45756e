"""Parsing `.net` text into a typed syntax tree with source positions. The only module that imports lark.

The grammar is `grammar/dcpnet.lark`. The LALR parser runs the transformer as it reduces, so the tree is
built bottom-up without recursion and a file of 10,000 layers costs no stack.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cache, lru_cache
from pathlib import Path

from .cache import cache_dir, digest, keep, read_kept
from .collector import gc_paused
from .errors import DcpnetError, SourceText


# -- expressions ---------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Expr:
    line: int
    col: int


@dataclass(frozen=True, eq=False)
class Num(Expr):
    value: float                       # the nearest double (nan when unusable: see `_float`)
    exact: Fraction | None = None      # the decimal as written, exactly (None when `value` is not finite)


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
class Slice(Expr):
    base: Expr
    start: int
    stop: int                          # exclusive, as in Python: v[i:j] has j - i entries
    stop_col: int = 0                  # column of the second integer


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
    exponent: float                    # the nearest double: u^p is the power atom of this p
    exponent_exact: Fraction | None = None   # the exponent as written (None: folded to an irrational)


def fold(e: Expr, rules: dict):
    """An atom body's tree evaluated bottom-up: `rules[kind](node, *folded operands)`, with the kinds
    "num", "name" (no operands), "neg", "pow" (one), "binop" (two) and "call" (a list of folded arguments).
    One walk for every writer of a body (PyTorch, CVXPY, ...), each giving only its rules.

    >>> fold(BinOp(1, 1, "+", Num(1, 1, 2.0), Name(1, 5, "t")), {"num": lambda e: str(e.value),
    ...      "name": lambda e: e.id, "binop": lambda e, a, b: f"({a} {e.op} {b})"})
    '(2.0 + t)'
    """
    if isinstance(e, Num):
        return rules["num"](e)
    if isinstance(e, Name):
        return rules["name"](e)
    if isinstance(e, Neg):
        return rules["neg"](e, fold(e.operand, rules))
    if isinstance(e, Pow):
        return rules["pow"](e, fold(e.base, rules))
    if isinstance(e, BinOp):
        return rules["binop"](e, fold(e.left, rules), fold(e.right, rules))
    if isinstance(e, Call):
        return rules["call"](e, [fold(a, rules) for a in e.args])
    raise ValueError(f"unexpected expression in an atom body: {e!r}")


# -- statements ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pos:
    line: int
    col: int


@dataclass(frozen=True)
class Decl:
    kind: str                          # "input", "param" or "const"
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
    lo_exact: Fraction | None = None   # the bounds as the decimals written (None: infinite or unusable)
    hi_exact: Fraction | None = None


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
    prop: str                          # convex, concave, affine, increasing, decreasing
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


@cache
def grammar_text() -> str:
    """The grammar, from the installed package data or from the source checkout (importlib.resources only
    for an installation that is not a folder, such as a zip: importing it costs more than the parse)."""
    for path in (Path(__file__).parent / "grammar" / "dcpnet.lark",
                 Path(__file__).resolve().parent.parent / "grammar" / "dcpnet.lark"):
        if path.is_file():
            return path.read_text()
    from importlib import resources

    return (resources.files("dcpnet") / "grammar" / "dcpnet.lark").read_text()


def normalise(text: str) -> str:
    """LF line endings (CRLF and lone CR become LF) and no byte-order mark: what the grammar and the
    line numbers of diagnostics both assume."""
    text = text.removeprefix("\ufeff")
    return text.replace("\r\n", "\n").replace("\r", "\n")


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


def exact_decimal(tok) -> Fraction | None:
    """The literal as the exact decimal written (`0.1` is one tenth); None where `_float` is not finite.

    >>> exact_decimal("0.1"), exact_decimal("1e400")
    (Fraction(1, 10), None)
    """
    value = _float(tok)
    if not math.isfinite(value):
        return None
    return Fraction(0) if value == 0 else Fraction(str(tok))   # a zero skips 10**exponent (0e999999999)


@lru_cache(maxsize=4096)
def _literal(tok) -> tuple[float, Fraction | None]:
    """`_float` and `exact_decimal` of a number as written, worked out once per distinct text (a network
    repeats a few, like 0 and 1; both values are immutable, so the repeats share them)."""
    return _float(tok), exact_decimal(tok)


def _signed(children) -> tuple[float, Fraction | None]:
    """A signed number's value and exact value."""
    value, exact = _literal(children[-1])
    if len(children) == 2 and children[0] == "-":
        return -1.0 * value, (None if exact is None else -exact)
    return 1.0 * value, exact


def _power(base: float, exponent: float) -> float:
    """base ** exponent for constant folding; inf on overflow and nan where undefined, never an exception
    (the semantic pass reports a non-finite exponent at its `^`)."""
    try:
        return math.pow(base, exponent)
    except OverflowError:
        return math.inf
    except ValueError:  # a negative base to a fractional power, or 0 to a negative one
        return math.nan


def _exact_power(base: Fraction | None, exponent: Fraction | None) -> Fraction | None:
    """base ** exponent when it is rational and small enough to hold; None otherwise."""
    if base is None or exponent is None or exponent.denominator != 1 or abs(exponent) > 64:
        return None
    if base == 0 and exponent < 0:
        return None
    return base ** int(exponent)


def _make_transformer(plain: bool = False):
    """The callbacks as a lark Transformer, or with `plain` as a plain object (the template path calls them
    itself, and needs no lark)."""
    if plain:
        base, decorate = object, (lambda cls: cls)
    else:
        from lark import Transformer, v_args

        base, decorate = Transformer, v_args(inline=False)

    @decorate
    class ToSyntax(base):
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
            return {"shape": tuple([_int(t) for t in sizes]), "shape_pos": _pos(items[0]),
                    "size_pos": tuple([_pos(t) for t in sizes])}

        def signed_number(self, items):
            value, exact = _signed(items)
            return (value, _pos(items[0]), exact)

        def at_least(self, items):
            return {"lo": items[0][0], "constraint_pos": items[0][1], "constraint": ">=", "lo_exact": items[0][2]}

        def at_most(self, items):
            return {"hi": items[0][0], "constraint_pos": items[0][1], "constraint": "<=", "hi_exact": items[0][2]}

        def between(self, items):
            return {"lo": items[0][0], "hi": items[1][0], "constraint_pos": items[0][1],
                    "hi_pos": items[1][1], "constraint": "in", "lo_exact": items[0][2], "hi_exact": items[1][2]}

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
                exact = None if operand.exact is None else -operand.exact
                return Num(op.line, op.column, -operand.value, exact)
            return Neg(op.line, op.column, operand)

        def power(self, items):
            base, op, (value, exact) = items
            return Pow(op.line, op.column, base, value, exact)

        def exponent(self, items):
            """(the nearest double, the exact value or None when folding left the rationals)."""
            sign = -1 if items[0] == "-" else 1
            rest = items[1:] if getattr(items[0], "type", None) == "SIGN" else items
            base = rest[0]
            value, exact = _literal(base) if not isinstance(base, tuple) else base
            if len(rest) == 3:  # base ^ exponent, right-associative
                value, exact = _power(value, rest[2][0]), _exact_power(exact, rest[2][1])
            return sign * value, (None if exact is None else sign * exact)

        def call(self, items):
            name, args = items[0], tuple(a for a in items[1:] if a is not None)
            return Call(name.line, name.column, str(name), args)

        def index(self, items):
            base, bracket, idx = items
            return Index(bracket.line, bracket.column, base, _int(idx), idx.column)

        def slice(self, items):
            base, bracket, start, stop = items
            return Slice(bracket.line, bracket.column, base, _int(start), _int(stop), stop.column)

        def number(self, items):
            tok = items[0]
            value, exact = _literal(tok)
            return Num(tok.line, tok.column, value, exact)

        def name(self, items):
            tok = items[0]
            return Name(tok.line, tok.column, str(tok))

    return ToSyntax()


@lru_cache(maxsize=1)
def _parser():
    from lark import Lark

    options = {"parser": "lalr", "lexer": "contextual", "transformer": _make_transformer(), "maybe_placeholders": False}
    return _lark(Lark, "parser", options)


def _lark(Lark, kind: str, options: dict):
    """A Lark parser whose LALR tables are kept in the user cache folder (~100 ms less per process; lark
    checks the grammar's hash before it uses them), or built afresh where there is no cache folder."""
    folder = cache_dir()
    if folder is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            return Lark(grammar_text(), cache=str(folder / f"lark-{kind}.cache"), **options)
        except OSError:
            pass
    return Lark(grammar_text(), **options)


# -- a fast path for files of many similar lines ---------------------------------------------------------
# Statements are one line each, and a deep network repeats a few line shapes (`zK = relu(WK @ zJ + bK)`).
# The first line of each shape is parsed by lark from the grammar; its tree becomes a template whose tokens
# are slots. Later lines of the same shape fill the slots with their own tokens and run the same
# transformer callbacks, skipping lark's lexer and LALR loop. Any line lark would not accept alone, or a
# character the scanner does not know, sends the whole file down the ordinary path (which reports errors).
#
# A shape met often also gets a regular expression that matches exactly its lines, and each shape
# remembers the shape of the line that followed it: the next line is first tried against that guess, so a
# repetitive file is read one match per line instead of a scan in Python (a miss costs one failed match).
_FAST_MAX_LEXEMES = 200          # longer lines (deep nesting) go the ordinary way: templates are recursive
PATTERN_AFTER = 16               # lines of one shape before it gets its pattern (compiling one costs ~0.5 ms)
_templates: dict[tuple, tuple | None] = {}


_TOKEN = re.compile(r"""[ \t\f\v]*(?:
    (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\*\*|>=|<=|[-+*/@^()\[\],=:])
  | (?P<comment>\#[^\n]*))""", re.VERBOSE)


def _lexemes(line: str) -> list[tuple[str, str, int]] | None:
    """(kind, text, column) of each lexeme of one line, or None at a character the language lacks."""
    out, pos = [], 0
    for m in _TOKEN.finditer(line):
        if m.start() != pos:                    # something between two lexemes that is none
            return None
        kind = m.lastgroup
        if kind == "comment":                   # runs to the end of the line
            return out
        out.append((kind, m.group(kind), m.start(kind) + 1))
        pos = m.end()
    return out if not line[pos:].strip(" \t\f\v") else None


def _shape_key(lexemes) -> tuple:
    """What decides how lark lexes and parses a line: operators and keywords as written, names as a class,
    numbers by whether they are plain digits (INT and NUMBER both match those)."""
    words = _grammar_words()
    return tuple(text if kind == "op" or text in words else
                 ("digits" if text.isdigit() else "number") if kind == "num" else "name"
                 for kind, text, _ in lexemes)


@lru_cache(maxsize=1)
def _grammar_words() -> frozenset:
    """Every keyword of the grammar (quoted words and the alternatives of keyword patterns like KIND)."""
    grammar = grammar_text()
    words = set(re.findall(r'"([A-Za-z_]+)"', grammar))
    for group in re.findall(r"/\(?([A-Za-z_|]+)\)?\(\?!", grammar):
        words.update(group.split("|"))
    return frozenset(words)


# The pieces of a shape's pattern: each matches what `_TOKEN` scans as that key element, and possessively,
# so a match splits a line into the lexemes the scanner finds (a name eats its digits, `**` is not `*`).
_GAP = r"[ \t\f\v]*"
_WORD_END = r"(?![A-Za-z0-9_])"
_DIGITS = r"\d++(?!\.|[eE][+-]?\d)"                            # a number that is plain digits
_NUMBER = r"(?>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"


@cache
def _piece(element: str) -> str:
    if element == "name":
        keywords = "|".join(sorted(_grammar_words()))
        return rf"(?!(?:{keywords}){_WORD_END})[A-Za-z_][A-Za-z0-9_]*+"
    if element == "digits":
        return _DIGITS
    if element == "number":
        return rf"(?!{_DIGITS}){_NUMBER}"
    if element in _grammar_words():
        return re.escape(element) + _WORD_END
    return r"\*(?!\*)" if element == "*" else re.escape(element)


def _line_pattern(key: tuple) -> re.Pattern:
    """The lines whose lexemes have this shape key, with lexeme i as group i + 1 (text and column)."""
    return re.compile(_GAP + _GAP.join(f"({_piece(e)})" for e in key) + _GAP + r"(?:#.*)?")


@lru_cache(maxsize=1)
def _tree_parser():
    from lark import Lark

    return _lark(Lark, "tree-parser", {"parser": "lalr", "lexer": "contextual", "maybe_placeholders": False})


def _template(line: str, lexemes) -> tuple | None:
    """The parse tree of one line with each token replaced by (lexeme index, token type); None if lark
    does not accept the line alone or its tokens do not line up with the scanner's lexemes."""
    from lark import Token, Tree
    from lark.exceptions import LarkError

    try:
        tree = _tree_parser().parse(line + "\n")
    except LarkError:
        return None
    at_column = {col: i for i, (_, _, col) in enumerate(lexemes)}

    def convert(node):
        if isinstance(node, Token):
            i = at_column.get(node.column)
            if i is None or lexemes[i][1] != str(node) or not _same_class(lexemes[i], node.type):
                raise LookupError
            return (i, node.type)
        return (str(node.data), [convert(k) for k in node.children])

    if not isinstance(tree, Tree) or str(tree.data) != "program" or len(tree.children) != 1:
        return None
    try:
        return convert(tree.children[0])
    except LookupError:
        return None


class _Token(str):
    """What the callbacks read of a lark Token (its text, type, line and column), made cheaply."""

    __slots__ = ("column", "line", "type")


def _token(kind: str, text: str, line: int, column: int) -> _Token:
    tok = _Token(text)
    tok.type, tok.line, tok.column = kind, line, column
    return tok


def _same_class(lexeme, token_type: str) -> bool:
    """A slot's lexeme class must be what lark made of it: a name a NAME, plain digits an INT or NUMBER."""
    kind, text, _ = lexeme
    if kind == "word" and text not in _grammar_words():
        return token_type == "NAME"
    if kind == "num":
        return token_type in ("INT", "NUMBER")
    return True


def _filler(template, callbacks: dict):
    """A function of (text, start, line number) that runs the transformer callbacks over the template with
    this line's tokens in its slots, where `text(i + 1)` and `start(i + 1)` give the text and the 0-based
    column of lexeme i (a match's `group` and `start`); made once per shape, so a line costs only the calls."""
    head, rest = template
    if head.__class__ is int:
        kind, group = rest, head + 1
        return lambda text, start, line_no: _token(kind, text(group), line_no, start(group) + 1)
    callback = callbacks[head]
    kids = [_filler(k, callbacks) for k in rest]
    if len(kids) == 1:
        (only,) = kids
        return lambda text, start, line_no: callback([only(text, start, line_no)])
    return lambda text, start, line_no: callback([kid(text, start, line_no) for kid in kids])


def _generated_filler(template, callbacks: dict):
    """`_filler` of the template as one generated function: a statement per token and per callback, with no
    closure call or list comprehension per node. Compiling it costs as much as ~30 lines read the other way,
    so only shapes met often get one."""
    names: dict = {"Token": _Token}      # what the source refers to: only numbers and these names enter it
    body: list[str] = []

    def emit(node) -> str:               # postorder, every value in a variable: no nesting to limit
        head, rest = node
        var, ref = f"v{len(body)}", f"n{len(names)}"
        if head.__class__ is int:
            names[ref], group = rest, int(head) + 1
            body.append(f"{var} = Token(text({group})); {var}.type = {ref}; {var}.line = line_no; "
                        f"{var}.column = start({group}) + 1")
            return var
        names[ref] = callbacks[head]
        args = ", ".join([emit(k) for k in rest])
        var = f"v{len(body)}"
        body.append(f"{var} = {ref}([{args}])")
        return var

    result = emit(template)
    source = "def fill(text, start, line_no):\n" + "".join(f"    {line}\n" for line in body) + f"    return {result}\n"
    exec(compile(source, "<dcpnet line filler>", "exec"), names)  # noqa: S102 (made above from numbers and names)
    return names["fill"]


class _Shape:
    """A line shape met in this process: its filler, how often it was met, its pattern once met often, and
    the shape of the line that followed it last (the guess for the next line). A plain class: a dataclass
    costs half a millisecond of every process's import."""

    __slots__ = ("fill", "key", "pattern", "seen", "template", "then")

    def __init__(self, key: tuple, template: tuple, fill):
        self.key, self.template, self.fill = key, template, fill
        self.seen = 0
        self.pattern: re.Pattern | None = None
        self.then: _Shape | None = None


_shapes: dict[tuple, _Shape] = {}


def _parse_by_templates(text: str, lines: list[str] | None = None) -> Program | None:
    """The program read line by line from templates; None where a line needs the ordinary parser. `lines`:
    the text's lines, where the caller has them already."""
    callbacks = _callbacks()
    _load_templates()
    known = len(_templates)
    try:
        return _fill_lines(text.split("\n") if lines is None else lines, callbacks)
    finally:
        if len(_templates) > known:
            _save_templates()


def _fill_lines(lines: list[str], callbacks: dict) -> Program | None:
    statements = []
    last = None                                   # the shape of the last statement
    for line_no, line in enumerate(lines, 1):
        guess = last.then if last is not None else None
        match = guess.pattern.fullmatch(line) if guess is not None and guess.pattern is not None else None
        if match is not None:
            statements.append(guess.fill(match.group, match.start, line_no))
            last = guess
            continue
        lexemes = _lexemes(line)
        if lexemes is None or len(lexemes) > _FAST_MAX_LEXEMES:
            return None
        if not lexemes:
            continue
        shape = _shape_of(line, lexemes, callbacks)
        if shape is None:
            return None
        statements.append(shape.fill(*_reading(lexemes), line_no))
        if last is not None:
            last.then = shape
        last = shape
    return callbacks["program"](statements)


def _reading(lexemes) -> tuple:
    """A filler's view of scanned lexemes, as a match gives it: the text and 0-based start of group i + 1."""
    return (lambda group: lexemes[group - 1][1]), (lambda group: lexemes[group - 1][2] - 1)


def _shape_of(line: str, lexemes, callbacks: dict) -> _Shape | None:
    """The shape of a scanned line, its template made by lark when it is new; None if it has none."""
    key = _shape_key(lexemes)
    shape = _shapes.get(key)
    if shape is None:
        if key not in _templates:
            made = _template(line, lexemes)
            _templates[key] = made if made is not None and _known_rules(made, callbacks) else None
        template = _templates[key]
        if template is None:
            return None
        if len(_shapes) >= TEMPLATES_KEPT:        # a process that met very many shapes starts afresh
            _shapes.clear()
        shape = _shapes[key] = _Shape(key, template, _filler(template, callbacks))
    shape.seen += 1
    if shape.seen == PATTERN_AFTER:
        shape.pattern = _line_pattern(key)
        shape.fill = _generated_filler(shape.template, callbacks)
    return shape


# -- templates kept between processes ---------------------------------------------------------------------
# Making a template takes lark: its import, its tables and its lexer's regular expressions cost a third of
# checking a small file. The templates of line shapes met before are kept in the user cache folder, under a
# key made of the grammar, this module's source and lark's version (so any change makes new ones), with a
# digest of the contents (a damaged file is ignored, never trusted).
TEMPLATES_KEPT = 4096           # shapes kept at most (a file of many distinct shapes is parsed the usual way)


@cache
def _templates_file() -> Path | None:
    folder = cache_dir()
    if folder is None:
        return None
    from importlib.util import find_spec

    spec = find_spec("lark")
    if spec is None or spec.origin is None:
        return None
    try:                                                # lark's __init__ names its version
        key = digest(grammar_text().encode(), Path(__file__).read_bytes(), Path(spec.origin).read_bytes())
    except OSError:
        return None
    return folder / f"templates-{key[:24]}.json"


@cache
def _load_templates() -> None:
    """Add the kept templates to `_templates` (once per process); nothing when there are none or the file is
    damaged."""
    body = read_kept(_templates_file())
    try:
        kept = {tuple(key): template for key, template in json.loads(body)} if body is not None else {}
    except (ValueError, TypeError):
        return
    for key, template in kept.items():
        _templates.setdefault(key, template)


def _save_templates() -> None:
    if len(_templates) <= TEMPLATES_KEPT:
        keep(_templates_file(), json.dumps([[list(key), template] for key, template in _templates.items()]))


def _known_rules(template: tuple, callbacks: dict) -> bool:
    head, rest = template
    return head.__class__ is int or (head in callbacks and all(_known_rules(k, callbacks) for k in rest))


@lru_cache(maxsize=1)
def _callbacks() -> dict:
    """The transformer's callbacks by rule name, bound once (lark's v_args wraps them at every lookup)."""
    transformer = _make_transformer(plain=True)
    return {name: getattr(transformer, name) for name in dir(transformer)
            if not name.startswith("_") and callable(getattr(transformer, name))}


def parse(text: str, file: str = "<input>", fast: bool = True) -> Program:
    """Parse `.net` text into a Program; a syntax error raises DcpnetError with one diagnostic per bad line.

    >>> prog = parse("input x, y[2] >= 0\\nz = relu(y) * x\\n")
    >>> [type(s).__name__ for s in prog.statements]
    ['Decl', 'Decl', 'Assign']
    >>> parse("y = (x\\nz = x +\\n", "f.net")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dcpnet.errors.DcpnetError: f.net:1:7: error: unexpected end of line; expected ')'...
    """
    text = normalise(text)
    source = SourceText(text, file)
    if fast:
        with gc_paused():
            program = _parse_by_templates(text, source.lines)
        if program is not None:
            program.source = source
            return program
    from lark.exceptions import UnexpectedInput
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
                "PROPERTY": "'convex', 'concave', 'affine', 'increasing' or 'decreasing'", "COMMENT": "a comment"}


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


_KEYWORDS = ("input", "param", "const", "atom", "output", "check")


def _hint(err, text: str) -> str:
    """A sentence for the common mistakes whose bare `expected …` list would puzzle a reader."""
    from .errors import did_you_mean

    expected = set(err.expected or ())
    lines, line = text.split("\n"), getattr(getattr(err, "token", None), "line", 0) or 0
    words = lines[line - 1].split() if 0 < line <= len(lines) else []
    if words[:1] == ["check"] and expected == {"RPAR"}:   # `check convex(sum(m)) in m`
        return ": a check takes the name of an assignment, not an expression: assign it first (`s = ...`), then check `s`"
    if expected == {"NUMBER", "SIGN", "LPAR"}:
        return ": the exponent of `^` must be a numeric constant, such as 2, -1 or 0.5"
    if expected and expected <= {"NUMBER", "SIGN"}:
        return ": a bound must be a number (a leading '-' is allowed)"
    if expected == {"EQUAL"}:  # `inpt x`: a misspelled keyword reads as the start of an assignment
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
    "Slice",
    "normalise",
    "parse",
]
