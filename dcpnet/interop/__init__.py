"""Reading models from other frameworks into `.net` text and params, and writing networks out to them.

Each module imports its framework (torch, onnx, cvxpy) lazily, inside its functions: importing this package
costs nothing, and `dcpnet check` never loads them.

- `from_torch`, `from_onnx`: a model as `.net` text and params.
- `to_torch`: the DAG as a `torch.nn.Module` whose parameters carry the `.net` names, with `project_()`.
- `to_cvxpy`: an output as a CVXPY expression of the inputs, DCP whenever dcpnet proves it convex.
"""
