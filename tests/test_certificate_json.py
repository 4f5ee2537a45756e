"""Certificates: built when first read, written to JSON without recursion, the same text as json.dumps."""
import json
import sys

from hypothesis import given
from hypothesis import strategies as st

from dcpnet.certificate import tree_json
from dcpnet.cli import main
from dcpnet.graph import load_text
from dcpnet.verify import Verifier

numbers = st.one_of(st.none(), st.floats(allow_nan=False), st.integers(-5, 5))
words = st.text(max_size=12)
nodes = st.recursive(
    st.fixed_dictionaries({"expr": words, "curvature": st.sampled_from(["convex", "affine"]),
                           "range": st.tuples(numbers, numbers).map(list), "rule": words,
                           "children": st.just([])}),
    lambda kids: st.one_of(
        st.fixed_dictionaries({"expr": words, "curvature": words, "range": st.tuples(numbers, numbers).map(list),
                               "rule": words, "children": st.lists(kids, max_size=3)}),
        st.fixed_dictionaries({"expr": words, "children": st.lists(kids, max_size=3), "steps": st.lists(words)})),
    max_leaves=20)


@given(nodes)
def test_tree_json_writes_what_json_dumps_writes(tree):
    assert tree_json(tree) == json.dumps(tree)


def _chain(depth: int) -> str:
    lines = ["input x"] + [f"z{k} = softplus({'x' if k == 0 else f'z{k - 1}'}) + x" for k in range(depth)]
    return "\n".join(lines + [f"check convex(z{depth - 1}) in x"]) + "\n"


def test_a_certificate_nested_deeper_than_the_recursion_limit_is_written(tmp_path, capsys):
    path = tmp_path / "deep.net"
    path.write_text(_chain(1500))                    # 3000 levels of nesting, the recursion limit 1000
    limit = sys.getrecursionlimit()
    assert main(["check", "--json", str(path)]) == 0
    assert sys.getrecursionlimit() == limit
    sys.setrecursionlimit(4 * 3000 + 1000)           # json.loads recurses per level
    try:
        report = json.loads(capsys.readouterr().out)
    finally:
        sys.setrecursionlimit(limit)
    cert = report["results"][0]["convex"]["certificate"]
    depth = 0
    while cert["children"]:
        cert, depth = cert["children"][0], depth + 1
    assert depth >= 3000 and cert["expr"] == "x"


def test_the_tree_is_built_when_first_read_and_shared_by_the_properties_it_proves():
    net = load_text("input x\ny = 2 * x + 1\n")
    r = Verifier(net).verify("y", ["x"])
    assert "_certificate" in vars(r.convex) and callable(vars(r.convex)["_certificate"])   # not built yet
    tree = r.affine.certificate
    assert r.convex.certificate is tree and r.concave.certificate is tree
    assert tree["curvature"] == "affine" and tree["rule"].startswith("sum")
    assert Verifier(net).verify("y", ["x"]).convex.as_json()["certificate"] == tree
