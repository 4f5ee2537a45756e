"""Templates kept between processes: a warm cache parses without lark and gives exactly what lark gives;
a damaged or unwritable cache is never trusted and never an error."""
import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
TEXT = ("# a small network\ninput x[3] >= 0\nparam W[2, 3] >= 0, b[2]\nz = relu(W @ x + b)\ny = sum(z) ^ 2\n"
        "output y\ncheck convex(y) in x\n")

PROBE = """
import sys
from dcpnet import syntax
print(repr(syntax.parse(sys.stdin.read(), "t.net").statements))
print("lark" in sys.modules)
"""


def _parse_in_a_process(text: str, cache) -> tuple[str, bool]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DCPNET_CACHE_DIR": str(cache)}
    done = subprocess.run([sys.executable, "-c", PROBE], input=text, capture_output=True, text=True, env=env,
                          check=True)
    statements, lark_loaded = done.stdout.rstrip("\n").rsplit("\n", 1)
    return statements, lark_loaded == "True"


def _by_lark(text: str) -> str:
    from dcpnet import syntax

    return repr(syntax.parse(text, "t.net", fast=False).statements)


def test_a_warm_cache_parses_without_lark_and_gives_what_lark_gives(tmp_path):
    cold, lark_cold = _parse_in_a_process(TEXT, tmp_path)
    warm, lark_warm = _parse_in_a_process(TEXT, tmp_path)
    assert cold == warm == _by_lark(TEXT)
    assert lark_cold and not lark_warm
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []   # written by a rename


def test_a_damaged_cache_is_ignored_and_replaced(tmp_path):
    _parse_in_a_process(TEXT, tmp_path)
    (kept,) = tmp_path.glob("templates-*.json")
    head, body = kept.read_text().split("\n", 1)
    entries = json.loads(body)
    entries[0][1] = entries[-1][1]                 # a template for another shape: well-formed, but wrong
    kept.write_text(head + "\n" + json.dumps(entries))
    statements, lark_loaded = _parse_in_a_process(TEXT, tmp_path)
    assert statements == _by_lark(TEXT) and lark_loaded
    head, body = kept.read_text().split("\n", 1)   # rewritten whole, with a digest that matches again
    import hashlib

    assert head == hashlib.sha256(body.encode()).hexdigest()


def test_no_cache_folder_or_an_unwritable_one_is_no_error(tmp_path):
    blocked = tmp_path / "a file"
    blocked.write_text("")
    for cache in ("", blocked / "dcpnet"):
        statements, lark_loaded = _parse_in_a_process(TEXT, cache)
        assert statements == _by_lark(TEXT) and lark_loaded
    assert [p.name for p in tmp_path.iterdir()] == ["a file"]
