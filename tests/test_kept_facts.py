"""The facts of user atoms kept between runs (dcpnet/symbolic/kept.py): the same facts as sympy derives, read
back exactly; a damaged file, a changed body or a limit's fallback never reaches a verdict."""
from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys

import pytest
from conftest import EXAMPLES, ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from test_symbolic_soundness import gen_case

from dcpnet.errors import DcpnetError
from dcpnet.graph import load_text
from dcpnet.lattice import Interval
from dcpnet.symbolic import kept, limits, user_atom
from dcpnet.symbolic.facts import AtomFacts, facts_from_json, facts_json

FACT_FIELDS = ("convex_on", "concave_on", "increasing_on", "decreasing_on", "domain", "open_at", "bounds",
               "derivative", "second_derivative", "notes")


def _facts(atom) -> tuple:
    return tuple(getattr(atom, f) for f in FACT_FIELDS)


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DCPNET_CACHE_DIR", str(tmp_path))
    return tmp_path


ends = hs.one_of(hs.floats(allow_nan=False), hs.sampled_from([0.0, -0.0, 5e-324, -math.inf, math.inf]))
intervals = hs.tuples(ends, ends).map(sorted).map(lambda p: Interval(*p))


@given(hs.builds(AtomFacts, hs.lists(intervals, max_size=3).map(tuple), hs.lists(intervals, max_size=3).map(tuple),
                 hs.lists(intervals, max_size=3).map(tuple), hs.lists(intervals, max_size=3).map(tuple), intervals,
                 hs.tuples(hs.booleans(), hs.booleans()), intervals, hs.text(), hs.text(),
                 hs.lists(hs.text(), max_size=2).map(tuple)))
def test_facts_read_back_exactly(facts):
    back = facts_from_json(json.loads(json.dumps(facts_json(facts))))
    assert back == facts
    assert all(math.copysign(1, a.lo) == math.copysign(1, b.lo) for a, b in zip(back.convex_on, facts.convex_on))


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(hs.integers(0, 2**32 - 1))
def test_kept_facts_are_the_facts_sympy_derives(seed):
    case = gen_case(random.Random(seed))
    try:
        text = case.text()
        load_text(text)
    except DcpnetError:
        return
    derived = user_atom(load_text(text), "f")
    if derived.notes and "limit" in derived.notes[0]:
        return                                               # a fallback: never kept (the next test)
    again = user_atom(load_text("\n# moved down\n" + text), "f")   # a new network: its facts from the file
    assert _facts(again) == _facts(derived)


def test_a_check_with_kept_facts_needs_no_sympy_and_prints_the_same(own_cache):
    """The first run derives in a child; the second imports no sympy and forks no child at all."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DCPNET_CACHE_DIR": str(own_cache)}
    probe = ("import json, os, sys; forks = []; fork = os.fork; os.fork = lambda: forks.append(1) or fork(); "
             "from dcpnet.cli import main; code = main(['check', sys.argv[1]]); "
             "print(json.dumps([code, 'sympy' in sys.modules, len(forks)]))")
    runs = [subprocess.run([sys.executable, "-c", probe, str(EXAMPLES / "seed_square.net")], check=True,
                           capture_output=True, text=True, env=env, timeout=120).stdout.splitlines()
            for _ in range(2)]
    (first, *printed), (second, *again) = ([lines[-1]] + lines[:-1] for lines in runs)
    assert json.loads(first) == [0, True, 1] and json.loads(second) == [0, False, 0]
    assert printed == again and any("refuted" in line for line in printed)
    assert len(list((own_cache / "atoms").iterdir())) == 1


def test_a_damaged_or_foreign_file_is_not_trusted(own_cache):
    text = "input x\natom f(t) = t^2 - t\ny = f(x)\n"
    derived = _facts(user_atom(load_text(text), "f"))
    (path,) = (own_cache / "atoms").iterdir()
    body = path.read_text().split("\n", 1)[1].replace('"convex_on": [[', '"convex_on": [[-1e300, 1e300], [')
    path.write_text(path.read_text().split("\n", 1)[0] + "\n" + body)           # the digest no longer matches
    assert _facts(user_atom(load_text(text), "f")) == derived
    other = kept.key(load_text("input x\natom f(t) = t^2 + t\ny = f(x)\n").atom_defs, "f")
    assert other != kept.key(load_text(text).atom_defs, "f")                  # another body, another file


def test_a_limit_is_not_kept(own_cache, monkeypatch):
    text = "input x\natom f(t) = t^2 + relu(t) - 3 * t\ny = f(x)\n"
    monkeypatch.setattr(limits, "WALL_SECONDS", 0.001)
    assert "wall-clock" in user_atom(load_text(text), "f").notes[0]
    assert not (own_cache / "atoms").exists() or not list((own_cache / "atoms").iterdir())
    monkeypatch.setattr(limits, "WALL_SECONDS", 10.0)
    assert user_atom(load_text(text), "f").convex_on == (Interval(-math.inf, math.inf),)
