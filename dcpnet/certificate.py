"""The proof tree: one node per subexpression with its curvature, range and the rule applied.

A DAG may share subexpressions; the tree shows a shared node in full the first time and as a reference
("see above") after that, so its size stays linear in the DAG. A node settled by a method beyond the rules
(rewriting, a Hessian enclosure) carries that method's record under "method"; a rewritten node's one child is
the certificate of its rewritten form. Built with an explicit stack: a chain of
10,000 layers is fine.
"""
from __future__ import annotations

from .lattice import Curvature

_VALUE = {c: c.value for c in Curvature}     # an enum's .value is a property: slow in a loop of 10^5 nodes


def certificate(analyzer, target, wrt, mark: int | None = None, monotone: bool = False) -> dict:
    """The certificate of `target` in `wrt` as the JSON tree of SPEC section 4; the node `mark` (where a proof
    stopped, for a partial tree) carries `"failed": true`; with `monotone` (monotonicity claims) each node
    carries its monotonicity in the variables."""
    net = analyzer.net
    steps = analyzer.steps(wrt)
    root = net.names[target] if isinstance(target, str) else target
    words: dict = {}

    def rule(step) -> str:
        # the layers of a deep network repeat a few rules with equal arguments: each is put in words once
        try:
            key = (step.template, step.args)
            if key not in words:
                words[key] = step.rule
            return words[key]
        except TypeError:   # an argument that cannot be a key
            return step.rule

    def make(node_id: int) -> dict:
        node = net.nodes[node_id]
        step = steps[node_id]
        expr = f"{node.names[0]} = {node.text}" if node.names and node.op != "var" else node.text
        out = {"expr": expr, "curvature": _VALUE[step.curvature], "range": analyzer.ranges[node_id].as_list(),
               "rule": rule(step), "children": []}
        if node_id == mark:
            out["failed"] = True
        if monotone:
            out["monotonicity"] = step.mono.value
        if step.detail is not None:   # a method beyond the rules: its record (the rewritten tree is a child)
            out["method"] = {k: v for k, v in step.detail.items() if k != "certificate"}
        return out

    # pre-order, as the tree is read: the first time a shared node is met it is shown in full
    tree = make(root)
    seen: set[int] = set()
    stack = [(root, tree)]
    while stack:
        node_id, out = stack.pop()
        args = net.nodes[node_id].args
        if node_id in seen and args:
            out["rule"] = "shown above"
            continue
        seen.add(node_id)
        detail = steps[node_id].detail
        if detail is not None:   # the proof below this node is the method's, not the rules' over its arguments
            out["children"] = [detail["certificate"]] if "certificate" in detail else []
            continue
        children = [make(a) for a in args]
        out["children"] = children
        stack.extend(reversed(list(zip(args, children))))
    return tree


_FIELDS = ("expr", "curvature", "range", "rule", "children")


def tree_json(tree: dict) -> str:
    """The tree as `json.dumps(tree)` writes it, without recursion: a chain of 10^5 nodes is fine.

    Text repeated between nodes (rules, curvatures) is encoded once.
    """
    import json
    from json.encoder import encode_basestring_ascii as quoted

    words: dict[str, str] = {}

    def word(text: str) -> str:
        if text not in words:
            words[text] = quoted(text)
        return words[text]

    out: list[str] = []
    stack: list = [tree]
    while stack:
        item = stack.pop()
        if item.__class__ is str:          # a separator or a closing bracket
            out.append(item)
            continue
        close = "]}"
        if tuple(item) == _FIELDS and item["expr"].__class__ is str and item["rule"].__class__ is str:
            lo, hi = item["range"]
            out.append(f'{{"expr": {word(item["expr"])}, "curvature": {word(item["curvature"])}, "range": '
                       f'[{_number(lo)}, {_number(hi)}], "rule": {word(item["rule"])}, "children": [')
        elif "children" not in item:       # not a tree node: the standard encoder
            out.append(json.dumps(item))
            continue
        else:                              # another shape: the fields around the children, as json.dumps has them
            keys = list(item)
            at = keys.index("children")
            before = json.dumps({k: item[k] for k in keys[:at]})[1:-1]
            after = json.dumps({k: item[k] for k in keys[at + 1:]})[1:-1]
            out.append("{" + (before + ", " if before else "") + '"children": [')
            close = "]" + (", " + after if after else "") + "}"
        children = item["children"]
        stack.append(close)
        for k in range(len(children) - 1, -1, -1):
            stack.append(children[k])
            if k:
                stack.append(", ")
    return "".join(out)


def _number(v) -> str:
    import json

    return "null" if v is None else float.__repr__(v) if v.__class__ is float and v - v == 0 else json.dumps(v)
