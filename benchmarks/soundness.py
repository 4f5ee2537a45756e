"""The random soundness audit of user atoms and literals, at scale (issue 14).

    python benchmarks/soundness.py [--claims 10000] [--seed 0]

Random networks, each with one random user atom (kinks, piecewise pieces, derivatives sympy cannot solve,
domain tricks) under three targets, every target checked for convexity and concavity. Each verdict is judged
by the independent mpmath reference of `tests/test_symbolic_soundness.py`: a proof must pass sampled Jensen
checks, a witness must be a valid point of the function as written inside the declared box. Prints the counts;
any false proof, invalid witness, crash or hang is printed in full.
"""
from __future__ import annotations

import argparse
import importlib.util
import pathlib
import random
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _audit_module():
    spec = importlib.util.spec_from_file_location("soundness_audit", ROOT / "tests" / "test_symbolic_soundness.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=float, default=0.05, help="refuter seconds per property")
    args = parser.parse_args()
    audit = _audit_module()
    rng = random.Random(args.seed)
    total, networks, slowest = audit.Counts(), 0, 0.0
    start = time.perf_counter()
    while total.claims < args.claims:
        t0 = time.perf_counter()
        total.add(audit.audit(audit.gen_case(rng), rng, budget=args.budget, pairs=8))
        slowest = max(slowest, time.perf_counter() - t0)
        networks += 1
        if networks % 100 == 0:
            print(f"  {networks} networks, {total.claims} claims, {time.perf_counter() - start:.0f} s", flush=True)
    for problem in total.problems:
        print("PROBLEM:", problem)
    print(f"networks {networks} (bad input {total.bad_input}), claims {total.claims}: proved {total.proved}, "
          f"refuted {total.refuted}, unknown {total.unknown}")
    print(f"false proofs {total.false_proofs}, invalid witnesses {total.invalid_witnesses}, crashes {total.crashes}, "
          f"hangs {total.hangs}")
    print(f"time {time.perf_counter() - start:.0f} s, slowest network {slowest:.1f} s")
    return 1 if total.problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
