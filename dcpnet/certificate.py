"""The proof tree: one node per subexpression with its curvature, range and the rule applied.

A DAG may share subexpressions; the tree shows a shared node in full the first time and as a reference
("see above") after that, so its size stays linear in the DAG. Built with an explicit stack: a chain of
10,000 layers is fine.
"""
from __future__ import annotations


def certificate(analyzer, target, wrt) -> dict:
    """The certificate of `target` in `wrt` as the JSON tree of SPEC section 4."""
    net = analyzer.net
    steps = analyzer.steps(wrt)
    root = net.names[target] if isinstance(target, str) else target
    seen: set[int] = set()

    def make(node_id: int) -> dict:
        node = net.nodes[node_id]
        step = steps[node_id]
        expr = f"{node.names[0]} = {node.text}" if node.names and node.op != "var" else node.text
        out = {"expr": expr, "curvature": step.curvature.value, "range": analyzer.ranges[node_id].as_list(),
               "rule": step.rule, "children": []}
        if node_id in seen and node.args:
            out["rule"] = "shown above"
        return out

    tree = make(root)
    seen.add(root)
    stack = [(root, tree)]
    while stack:
        node_id, out = stack.pop()
        for a in net.nodes[node_id].args:
            child = make(a)
            out["children"].append(child)
            if a not in seen:
                seen.add(a)
                stack.append((a, child))
    return tree

