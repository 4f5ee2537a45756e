"""The proof tree: one node per subexpression with its curvature, range and the rule applied.

A DAG may share subexpressions; the tree shows a shared node in full the first time and as a reference
("see above") after that, so its size stays linear in the DAG. Built with an explicit stack: a chain of
10,000 layers is fine.
"""
from __future__ import annotations


def certificate(analyzer, target, wrt, mark: int | None = None) -> dict:
    """The certificate of `target` in `wrt` as the JSON tree of SPEC section 4; the node `mark` (where a proof
    stopped, for a partial tree) carries `"failed": true`."""
    net = analyzer.net
    steps = analyzer.steps(wrt)
    root = net.names[target] if isinstance(target, str) else target

    def make(node_id: int) -> dict:
        node = net.nodes[node_id]
        step = steps[node_id]
        expr = f"{node.names[0]} = {node.text}" if node.names and node.op != "var" else node.text
        out = {"expr": expr, "curvature": step.curvature.value, "range": analyzer.ranges[node_id].as_list(),
               "rule": step.rule, "children": []}
        if node_id == mark:
            out["failed"] = True
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
        children = [make(a) for a in args]
        out["children"] = children
        stack.extend(reversed(list(zip(args, children))))
    return tree
