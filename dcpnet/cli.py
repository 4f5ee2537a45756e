"""The `dcpnet` command line: a thin layer that parses options and calls one function per subcommand.

Subcommands import their machinery lazily, so `dcpnet check` on a file without user atoms never loads sympy.
Exit codes (SPEC section 3): 0 every check holds, 1 some check does not, 2 bad input.
"""
from __future__ import annotations

import argparse
import sys

from .errors import DcpnetError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # same shape as our other errors, and exit code 2
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_BAD_INPUT)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _nonneg_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a nonnegative integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text}")
    return value


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dcpnet", description="Prove or refute the convexity of neural networks.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    check = sub.add_parser("check", help="prove or refute the curvature claims of a .net file")
    check.add_argument("file", help="the .net file")
    check.add_argument("--wrt", help="also analyse every output in these variables (comma-separated; "
                       "`inputs` and `params` name the groups)")
    check.add_argument("--json", action="store_true", help="print the JSON report on stdout")
    check.add_argument("--tree", action="store_true", help="print the certificate tree of each result")
    check.add_argument("--seed", type=_nonneg_int, default=0, help="seed of the witness search (default 0)")
    check.add_argument("--budget", type=_positive_float, default=3.0,
                       help="seconds of witness search per claim (default 3)")
    check.add_argument("--plot", metavar="FILE.png", help="draw the first witness along its segment")
    check.add_argument("--width", type=_positive_int, help=argparse.SUPPRESS)

    train = sub.add_parser("train", help="fit the params of a network, keeping its sign constraints")
    train.add_argument("file")
    train.add_argument("--data", required=True, help="DATA.npz: one array per input, leading example axis")
    train.add_argument("--loss", required=True, help="the scalar output to minimise (mean over examples)")
    train.add_argument("--epochs", type=_positive_int, default=10)
    train.add_argument("--batch", type=_positive_int, default=64)
    train.add_argument("--lr", type=_positive_float, default=1e-2)
    train.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    train.add_argument("--seed", type=_nonneg_int, default=0)
    train.add_argument("--out", default="params.npz", help="where to save the params (default params.npz)")
    train.add_argument("--init", help="PARAMS.npz to start from")
    train.add_argument("--val", type=float, default=0.0, help="fraction of examples held out for validation")
    train.add_argument("--patience", type=_positive_int, help="stop after this many epochs without "
                       "validation improvement")
    train.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    train.add_argument("--plot", metavar="FILE.png", help="draw the loss curve")

    ev = sub.add_parser("eval", help="run the compiled network on data")
    ev.add_argument("file")
    ev.add_argument("--params", required=True, help="PARAMS.npz: one array per param")
    ev.add_argument("--data", required=True, help="DATA.npz: one array per input")
    ev.add_argument("--out", help="OUT.npz: one array per output (default: print a summary)")
    ev.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        if args.command == "check":
            from .report import run_check

            return run_check(args)
        if args.command == "train":
            from .train import run_train

            return run_train(args)
        from .evaluate import run_eval

        return run_eval(args)
    except DcpnetError as err:
        sys.stderr.write(err.format() + "\n")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


def load_network(path: str):
    """Read and build a network; a missing or unreadable file is bad input (graph.load says where)."""
    from .graph import load

    return load(path)
