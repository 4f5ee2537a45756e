"""The proof tree: one node per subexpression with its curvature, range and the rule applied.

A DAG may share subexpressions; the tree shows a shared node in full the first time and as a reference
("see above") after that, so its size stays linear in the DAG. A node settled by a method beyond the rules
(rewriting, a Hessian enclosure) carries that method's record under "method"; a rewritten node's one child is
the certificate of its rewritten form. Built with an explicit stack: a chain of
10,000 layers is fine.
"""
from __future__ import annotations


def certificate(analyzer, target, wrt, mark: int | None = None, monotone: bool = False) -> dict:
    """The certificate of `target` in `wrt` as the JSON tree of SPEC section 4; the node `mark` (where a proof
    stopped, for a partial tree) carries `"failed": true`; with `monotone` (monotonicity claims) each node
    carries its monotonicity in the variables."""
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
