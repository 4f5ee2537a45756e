"""Reading models from other frameworks into `.net` text and params, and writing networks out to them.

Each module imports its framework (torch, onnx) lazily, inside its functions: importing this package costs
nothing, and `dcpnet check` never loads them.
"""
