"""The facts of user atoms kept between runs, so a network checked before is checked again without sympy.

sympy's import and analysis are most of the time of checking a small file with atoms. The facts an atom gets
depend only on its body as parsed (positions aside), the bodies of the atoms it calls, and the code that
derives them; the key is the digest of all of those (this package's sources, the atom table, the interval
arithmetic, the versions of sympy, mpmath and Python), so any change in any of them derives afresh. One
file per atom under the user cache folder (`dcpnet.cache`), digest-checked: a damaged file is ignored.
Only facts sympy derived are kept: a limit's fallback is not (a later run, with more time, may do better).

>>> from dcpnet.graph import load_text
>>> net = load_text("atom sq(t) = t^2\\natom g(t) = sq(t) - 1\\n")
>>> key(net.atom_defs, "g") == key(load_text("\\n\\natom sq(t)=t^2\\natom g(t) = sq(t)-1  # moved\\n").atom_defs, "g")
True
>>> key(net.atom_defs, "g") == key(load_text("atom sq(t) = t^2\\natom g(t) = sq(t) - 1.5\\n").atom_defs, "g")
False
"""
from __future__ import annotations

import json
import sys
from dataclasses import fields
from fractions import Fraction
from functools import cache
from importlib.util import find_spec
from pathlib import Path

from .. import cache as kept_files
from .. import syntax as st
from .facts import AtomFacts, facts_from_json, facts_json

POSITIONS = {"line", "col", "index_col", "stop_col"}     # where a subexpression is written decides nothing
FORMAT = 1                                                # of the files: a change makes new keys


def key(defs: dict, name: str) -> str | None:
    """The digest that decides the facts of atom `name` (its body, its callees', and the deriving code);
    None where the code cannot be read (nothing is kept then)."""
    code = _code_digest()
    if code is None:
        return None
    atoms = {n: [defs[n].arg, _plain(defs[n].body)] for n in _called(defs, name)}
    text = json.dumps([FORMAT, name, atoms], sort_keys=True, separators=(",", ":"))
    return kept_files.digest(code.encode(), text.encode())


def facts(atom_key: str | None) -> AtomFacts | None:
    """The facts kept under `atom_key`, or None when there are none (or they are damaged)."""
    text = kept_files.read_kept(_path(atom_key))
    if text is None:
        return None
    try:
        return facts_from_json(json.loads(text))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def keep_facts(atom_key: str | None, found: AtomFacts) -> None:
    kept_files.keep(_path(atom_key), json.dumps(facts_json(found)))


def _path(atom_key: str | None) -> Path | None:
    folder = kept_files.cache_dir()
    return None if folder is None or atom_key is None else folder / "atoms" / f"{atom_key[:40]}.json"


def _called(defs: dict, name: str) -> list[str]:
    """`name` and every user atom its body calls, directly or not."""
    seen, todo = [], [name]
    while todo:
        n = todo.pop()
        if n in seen or n not in defs:
            continue
        seen.append(n)
        todo.extend(_calls(defs[n].body))
    return seen


def _calls(e) -> list[str]:
    out, todo = [], [e]
    while todo:
        e = todo.pop()
        if isinstance(e, st.Call):
            out.append(e.func)
        todo.extend(_children(e))
    return out


def _children(e) -> list:
    values = (getattr(e, f.name) for f in fields(e) if f.name not in POSITIONS)
    kids = []
    for v in values:
        kids.extend(v if isinstance(v, tuple) else [v])
    return [k for k in kids if isinstance(k, st.Expr)]


def _plain(e) -> object:
    """A syntax tree as JSON data without positions; floats by repr and fractions as text (both exact)."""
    if isinstance(e, st.Expr):
        return [type(e).__name__] + [_plain(getattr(e, f.name)) for f in fields(e) if f.name not in POSITIONS]
    if isinstance(e, tuple):
        return [_plain(v) for v in e]
    if isinstance(e, (float, Fraction)):
        return repr(e)
    return e


@cache
def _code_digest() -> str | None:
    """The sources that derive facts (this package, the atom table, the interval arithmetic) and the versions
    of sympy, mpmath and Python, read without importing sympy or mpmath; None when any cannot be read."""
    here = Path(__file__).resolve().parent
    sources = sorted(here.glob("*.py")) + [here.parent / "atoms.py", here.parent / "lattice.py"]
    for lib, version_file in (("sympy", "release.py"), ("mpmath", "__init__.py")):
        spec = find_spec(lib)
        if spec is None or spec.origin is None:
            return None
        sources.append(Path(spec.origin).parent / version_file)
    try:
        return kept_files.digest(sys.version.encode(), *(p.read_bytes() for p in sources))
    except OSError:
        return None
