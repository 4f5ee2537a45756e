"""Time to parse and build the DAG of a generated network of many chained layers (issue 2: < 2 s for 10,000).

    python benchmarks/parse_chain.py [LAYERS] [WIDTH]

Each layer is `z{k} = relu(W{k} @ z{k-1} + b{k})` with its own params, so the file has 3 lines per layer
and the DAG about 5 nodes per layer. Run with the default recursion limit: nothing may recurse per layer.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dcpnet import graph, syntax


def chain(layers: int, width: int) -> str:
    lines = [f"input z0[{width}]"]
    for k in range(1, layers + 1):
        lines.append(f"param W{k}[{width}, {width}], b{k}[{width}]")
        lines.append(f"z{k} = relu(W{k} @ z{k - 1} + b{k})")
    lines.append(f"loss = sum_squares(z{layers})")
    lines.append(f"check convex(z{layers}) in z0")
    return "\n".join(lines) + "\n"


def main(layers: int = 10_000, width: int = 4) -> None:
    text = chain(layers, width)
    syntax.parse("input x\n")                      # build the cached parser first: it is made once per process
    t0 = time.perf_counter()
    program = syntax.parse(text, "chain.net")
    t1 = time.perf_counter()
    net = graph.build(program)
    t2 = time.perf_counter()
    print(f"{layers} layers, {len(text.splitlines())} lines, {len(net.nodes)} nodes "
          f"(recursion limit {sys.getrecursionlimit()})")
    print(f"parse {t1 - t0:.3f} s, build {t2 - t1:.3f} s, total {t2 - t0:.3f} s")
    t3 = time.perf_counter()
    syntax._parser.cache_clear()
    syntax.parse("input x\n")
    print(f"(building the lark parser itself, once per process: {time.perf_counter() - t3:.3f} s)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
