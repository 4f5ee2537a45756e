"""Printing what dcpnet found: rich tables and trees for people, JSON for tools. Imports rich lazily."""
from __future__ import annotations

import sys

from .cli import EXIT_OK, load_network


def run_check(args) -> int:
    net = load_network(args.file)
    from rich.console import Console
    from rich.table import Table

    console = Console(width=args.width) if args.width else Console()
    table = Table(title=f"{args.file}")
    for col in ("name", "kind", "shape", "constraint"):
        table.add_column(col)
    for v in net.variables.values():
        table.add_row(v.name, v.kind, str(list(v.shape)), str(v.bounds))
    console.print(table)
    console.print(f"outputs: {', '.join(net.outputs)}")
    sys.stdout.flush()
    return EXIT_OK
