"""dcpnet against CVXPY over a few thousand random expressions: the (CVXPY verdict × dcpnet verdict) table.

    python benchmarks/oracle.py [--n 3000] [--start 0] [--budget 0.5] [--jobs 4] [--pairs 300]

Each expression (tests/oracle_gen.py, one per seed) is built in both systems. CVXPY's verdict is its DCP
analysis (is_affine / is_convex / is_concave); dcpnet's is `Verifier.verify(y, inputs)` with `--budget` seconds
of witness search. Every dcpnet proof is also tested with `--pairs` random Jensen pairs (breaks confirmed in
mpmath), and every witness is re-evaluated in mpmath by the generator's own evaluator. Needs cvxpy.

Goal (issue 8): dcpnet proves at least everything CVXPY proves, and settles (proves or refutes both convexity
and concavity) at least half of the expressions CVXPY rejects as non-DCP.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import oracle_gen as og

CVX_ROWS = ("affine", "convex", "concave", "non-DCP")
DCP_COLS = ("affine", "convex", "concave", "neither (refuted)", "one refuted", "unknown")


def _one(job: tuple) -> dict:
    seed, budget, pairs = job
    rec = og.judge(og.make_case(seed), budget=budget, jensen_pairs=pairs)
    rec["text"] = og.make_case(seed).text if rec["floor"] or rec["unsound"] else None
    return rec


def _table(rows: list[dict], exception: bool) -> None:
    counts = Counter((og.cvxpy_class(r["cvxpy"]), og.dcpnet_class(r["dcpnet"])) for r in rows
                     if r["cvxpy"]["exception"] == exception)
    width = max(len(c) for c in DCP_COLS) + 2
    print("CVXPY \\ dcpnet".ljust(16) + "".join(c.rjust(width) for c in DCP_COLS) + "total".rjust(8))
    for row in CVX_ROWS:
        cells = [counts[(row, c)] for c in DCP_COLS]
        print(row.ljust(16) + "".join(str(n).rjust(width) for n in cells) + str(sum(cells)).rjust(8))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--budget", type=float, default=0.5, help="seconds of witness search per expression")
    ap.add_argument("--pairs", type=int, default=300, help="random Jensen pairs per scale per proof")
    ap.add_argument("--jobs", type=int, default=4)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    jobs = [(s, args.budget, args.pairs) for s in range(args.start, args.start + args.n)]
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(_one, jobs, chunksize=8))
    wall = time.perf_counter() - t0

    plain = [r for r in rows if not r["cvxpy"]["exception"]]
    excepted = [r for r in rows if r["cvxpy"]["exception"]]
    print(f"{len(rows)} random expressions (seeds {args.start}..{args.start + args.n - 1}), witness budget "
          f"{args.budget} s, {args.jobs} processes, {wall:.0f} s\n")
    print(f"Expressions without the power exception ({len(plain)}):")
    _table(rows, exception=False)
    print(f"\nExpressions where CVXPY restricts power(u, p), p > 1 not 2^k, to u >= 0 ({len(excepted)}):")
    _table(rows, exception=True)

    claims = [(r, p) for r in plain for p in og.PROPS if r["cvxpy"][p]]
    floor_ok = sum(r["dcpnet"][p] == "proved" for r, p in claims)
    nondcp = [r for r in plain if og.cvxpy_class(r["cvxpy"]) == "non-DCP"]
    settled = sum(og.settled(r["dcpnet"]) for r in nondcp)
    partly = sum(any(r["dcpnet"][p] != "unknown" for p in ("convex", "concave")) for r in nondcp)
    beyond = sum(r["dcpnet"][p] == "proved" and not r["cvxpy"][p] for r in rows for p in og.PROPS)
    proofs = sum(v == "proved" for r in rows for v in r["dcpnet"].values())
    witnesses = sum(v == "refuted" for r in rows for v in r["dcpnet"].values())
    exc_refuted = sum(r["cvxpy"][p] and r["dcpnet"][p] == "refuted" for r in excepted for p in og.PROPS)
    print("\nNumbers for the issue notes:")
    print(f"  floor: dcpnet proves {floor_ok} of the {len(claims)} claims CVXPY proves "
          f"({100 * floor_ok / max(len(claims), 1):.1f}%)")
    print(f"  non-DCP for CVXPY: {len(nondcp)}; dcpnet settles {settled} "
          f"({100 * settled / max(len(nondcp), 1):.1f}%; convex and concave both proved or refuted), "
          f"decides at least one of the two in {partly} ({100 * partly / max(len(nondcp), 1):.1f}%)")
    print(f"  dcpnet proves {beyond} claims CVXPY cannot; {proofs} proofs Jensen-tested, {witnesses} "
          f"witnesses re-checked in mpmath")
    print(f"  power exception: {len(excepted)} expressions; {exc_refuted} claims CVXPY proves were refuted by "
          f"dcpnet with witnesses outside CVXPY's domain u >= 0")
    for kind, hole in (("a Jensen gap", False), ("a midpoint outside the domain", True)):
        missed = [r for r in rows if any(("midpoint leaves the domain" in m) == hole for m in r["missed"])]
        print(f"  unknown, but the oracle's own search breaks it with {kind} (confirmed in mpmath): "
              f"{len(missed)} expressions" + (f", e.g. seeds {[r['seed'] for r in missed[:8]]}" if missed else ""))
    vacuous = [r["seed"] for r in rows if r["vacuous"]]
    print(f"  CVXPY proofs on an empty domain (the expression is defined nowhere) that dcpnet leaves unknown: "
          f"{len(vacuous)}" + (f", seeds {vacuous[:8]}" if vacuous else ""))
    bad = [r for r in rows if r["floor"] or r["unsound"]]
    print(f"  problems: {sum(len(r['unsound']) for r in rows)} soundness, "
          f"{sum(len(r['floor']) for r in rows)} floor")
    for r in bad[:20]:
        print(f"\n  seed {r['seed']}: " + "; ".join(r["floor"] + r["unsound"]))
        print("    " + r["text"].replace("\n", "\n    ").rstrip())
    return 0 if not bad else 1


if __name__ == "__main__":
    raise SystemExit(main())
