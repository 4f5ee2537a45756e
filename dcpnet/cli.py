"""The `dcpnet` command line: argparse, and the body of every command.

Each body is one library call and the printing of its answer; the machinery is imported inside the body, so
`dcpnet check` on a file without user atoms never loads sympy, the training package or the interop layer.
Nothing imports this module. Exit codes (SPEC section 3): 0 every check holds, 1 some check does not (or
training stopped on a non-finite value), 2 bad input.
"""
from __future__ import annotations

import argparse
import gc
import os
import sys

from .errors import DcpnetError, Diagnostic

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # same shape as our other errors, and exit code 2
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_BAD_INPUT)


def _number(kind, test, wanted: str):
    """An argparse type: `kind(text)` that passes `test`, else an error saying what was `wanted`."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text}")
        return value
    return parse


_positive_int = _number(int, lambda v: v > 0, "a positive integer")
_nonneg_int = _number(int, lambda v: v >= 0, "a nonnegative integer")
_positive_float = _number(float, lambda v: 0 < v < float("inf"), "a positive finite number")


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("dcpnet")
    except metadata.PackageNotFoundError:      # run from a source checkout that was never installed
        from . import __version__

        return __version__


class _VersionAction(argparse.Action):
    """`--version`, looked up only when asked: importlib.metadata costs a tenth of a small check."""

    def __call__(self, parser, namespace, values, option_string=None):
        sys.stdout.write(f"dcpnet {_version()}\n")
        parser.exit()


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dcpnet", description="Prove or refute the convexity of neural networks.")
    parser.add_argument("--version", action=_VersionAction, nargs=0, help="show the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_check(sub)
    _add_train(sub)
    _add_eval(sub)
    _add_import(sub)
    _add_export(sub)
    return parser


def _add_output_options(p) -> None:
    p.add_argument("--width", type=_positive_int, help="console width in columns (default: the terminal's, "
                   "else $COLUMNS; output to a pipe or file is not wrapped)")
    p.add_argument("--color", action=argparse.BooleanOptionalAction, default=None,
                   help="colour the output (default: on a terminal, unless $NO_COLOR is set; $FORCE_COLOR forces it)")


def _command(sub, name: str, summary: str):
    """A subcommand whose --help shows every default."""
    return sub.add_parser(name, help=summary, formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def _add_dtype(p) -> None:
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64", help="precision of the arrays")


def _add_check(sub) -> None:
    check = _command(sub, "check", "prove or refute the curvature claims of .net files")
    check.add_argument("files", nargs="+", metavar="FILE", help="the .net files")
    check.add_argument("--wrt", help="also analyse every output in these variables (comma-separated; "
                       "`inputs` and `params` name the groups)")
    check.add_argument("--json", action="store_true", help="print the JSON report on stdout")
    check.add_argument("--tree", action="store_true", help="print the certificate tree of each result (the "
                       "partial tree, with the failing node marked, where not proved)")
    check.add_argument("--seed", type=_nonneg_int, default=0, help="seed of the witness search")
    check.add_argument("--budget", type=_positive_float, default=3.0,
                       help="seconds of witness search per claim; the default table shares one budget")
    check.add_argument("--plot", metavar="FILE.png", help="draw the first witness along its segment")
    check.add_argument("--params", metavar="PARAMS.npz", help="fix every param to these trained values: "
                       "the verdicts are then about this network, and checks may ask only about inputs")
    _add_output_options(check)


def _add_train(sub) -> None:
    train = _command(sub, "train", "fit the params of a network, keeping its sign constraints")
    train.add_argument("file")
    train.add_argument("--data", required=True, help="DATA.npz: one array per input, leading example axis")
    train.add_argument("--loss", required=True, help="the scalar output to minimise (mean over examples)")
    train.add_argument("--epochs", type=_positive_int, default=10)
    train.add_argument("--batch", type=_positive_int, default=64)
    train.add_argument("--lr", type=_positive_float, default=1e-2)
    train.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    train.add_argument("--seed", type=_nonneg_int, default=0)
    train.add_argument("--out", default="params.npz", help="where to save the params")
    train.add_argument("--force", action="store_true", help="overwrite an existing --out (and --plot)")
    train.add_argument("--init", help="PARAMS.npz to start from")
    train.add_argument("--val", type=float, default=0.0, help="fraction of examples held out for validation")
    train.add_argument("--patience", type=_positive_int, help="stop after this many epochs without "
                       "validation improvement")
    _add_dtype(train)
    train.add_argument("--plot", metavar="FILE.png", help="draw the loss curve")


def _add_import(sub) -> None:
    imp = _command(sub, "import", "read a PyTorch (.pt2) or ONNX model into NAME.net and NAME.npz")
    imp.add_argument("model", help="MODEL.pt2 (torch.export.save) or MODEL.onnx")
    imp.add_argument("-o", "--out", required=True, metavar="NAME.net", help="the .net file to write; the "
                     "weights go to NAME.npz beside it")


def _add_eval(sub) -> None:
    ev = _command(sub, "eval", "run the compiled network on data")
    ev.add_argument("file")
    ev.add_argument("--params", required=True, help="PARAMS.npz: one array per param")
    ev.add_argument("--data", required=True, help="DATA.npz: one array per input")
    ev.add_argument("--out", help="OUT.npz: one array per output (default: print a summary)")
    _add_dtype(ev)


def _add_export(sub) -> None:
    ex = sub.add_parser("export", help="write the network as a PyTorch module or a CVXPY problem (Python)")
    ex.add_argument("file")
    ex.add_argument("--to", required=True, choices=["torch", "cvxpy"], help="the library to write for")
    ex.add_argument("-o", "--out", required=True, metavar="FILE.py", help="where to write the Python file")
    ex.add_argument("--output", help="the outputs to export (comma-separated; cvxpy: the one to minimise, "
                    "default the first)")
    ex.add_argument("--fixed", help="cvxpy: inputs given values at run time rather than optimised over")
    ex.add_argument("--force", action="store_true", help="overwrite an existing --out")


def _names(text: str | None) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()] if text else []


def _cmd_export(args) -> int:
    from .interop.export import export

    _writable(args.out, "--out", args.force)
    print(export(args.file, args.to, args.out, _names(args.output) or None, _names(args.fixed)))
    return EXIT_OK


def run() -> None:
    """The `dcpnet` program: one command, then the process ends. Whatever is alive then is frozen, so the
    interpreter's last collection does not traverse every object (the network, its analysis, numpy's) only to
    free nothing; `main` itself, called in a process that goes on, leaves the collector as it was."""
    code = main()
    gc.freeze()
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    command = {"check": _cmd_check, "train": _cmd_train, "eval": _cmd_eval, "import": _cmd_import,
               "export": _cmd_export}[args.command]
    try:
        return command(args)
    except DcpnetError as err:
        sys.stderr.write(err.format() + "\n")
        return EXIT_BAD_INPUT
    except BrokenPipeError:                    # `dcpnet check ... | head`: the reader left, nothing failed
        _silence_stdout()
        return getattr(args, "outcome", EXIT_OK)
    except KeyboardInterrupt:
        return 130


def _silence_stdout() -> None:
    # Python flushes stdout at exit; a closed pipe would raise again there
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


# -- import --------------------------------------------------------------------------------------------
def _cmd_import(args) -> int:
    from .interop.importing import run_import

    print("\n".join(run_import(args.model, args.out)))
    return EXIT_OK


# -- check ---------------------------------------------------------------------------------------------
def _cmd_check(args) -> int:
    from .collector import gc_paused

    with gc_paused():   # each network and its analysis live until the command ends: a pass over them frees nothing
        return _check_files(args)


def _check_files(args) -> int:
    from .graph import load
    from .verify import check_network

    reports, codes = [], []
    for path in args.files:
        try:
            net = load(path)
            if args.params:                    # the trained weights fixed: dcpnet/fixed.py
                from .fixed import load_fixed

                net, digest = load_fixed(net, args.params)
            results = check_network(net, args.wrt, seed=args.seed, budget=args.budget, trees=args.tree)
        except DcpnetError as err:
            if len(args.files) == 1:
                raise
            sys.stderr.write(err.format() + "\n")
            codes.append(EXIT_BAD_INPUT)
            continue
        ok = all(r.holds is not False for r in results)
        codes.append(EXIT_OK if ok else EXIT_FAILED)
        args.outcome = max(codes)
        reports.append((path, net, results, ok))
        if not args.json:
            _print_check(args, path, net, results)
    if args.json:
        from .report import dump_json

        fixed = {"params": {"file": args.params, "sha256": digest}} if args.params and reports else {}
        dump_json([{"file": path, "ok": ok, **fixed, "results": [r.as_json() for r in results]}
                   for path, _, results, ok in reports], single=len(args.files) == 1)
    if args.plot:
        _plot_first_witness(reports, args.plot)
    return max(codes)


def _print_check(args, path: str, net, results) -> None:
    from .report import print_results

    console = make_console(args)
    if len(args.files) > 1:
        console.print(path, style="bold", highlight=False, markup=False)
    if not net.outputs and not net.checks:
        sys.stderr.write(f"{path}: warning: no `output` and no `check` line: there is nothing to check\n")
    if args.params:
        console.print(f"params fixed to {args.params}", highlight=False, markup=False)
    print_results(console, net, results, tree=args.tree)


def _plot_first_witness(reports, path: str) -> None:
    from .report import plot_witness

    for _, net, results, _ in reports:
        for r in results:
            for prop in ("convex", "concave"):
                if r[prop].witness:
                    plot_witness(net, r.expr, r[prop].witness, path)
                    return
    sys.stderr.write(f"{path}: nothing refuted, so there is no witness to draw (no file written)\n")


def make_console(args, stderr: bool = False):
    """A console for people: a terminal gets its width and colours; a pipe or a file gets lines that are
    never wrapped, no trailing spaces and no colour codes (unless `--color` or $FORCE_COLOR asks)."""
    stream = sys.stderr if stderr else sys.stdout
    terminal = stream.isatty()
    color = args.color if getattr(args, "color", None) is not None else \
        (terminal or bool(os.environ.get("FORCE_COLOR"))) and not os.environ.get("NO_COLOR")
    width = getattr(args, "width", None) or (None if terminal else _env_columns())

    def rich_console():
        from rich.console import Console

        if terminal:
            return Console(file=stream, width=width, no_color=not color, force_terminal=color or None, emoji=False)
        return Console(file=_RightTrimmed(stream), width=width or 100_000, no_color=not color,
                       force_terminal=color, color_system="standard" if color else None, soft_wrap=width is None,
                       highlight=False, emoji=False)
    if terminal or color or width is not None:
        return rich_console()
    from .report import PlainLines  # plain unwrapped lines need no rich (its import is a fifth of a small check)

    return PlainLines(stream, rich_console)


def _env_columns() -> int | None:
    text = os.environ.get("COLUMNS", "")
    return int(text) if text.isdigit() and int(text) > 0 else None


class _RightTrimmed:
    """A text stream that drops the spaces before each line end (rich pads lines to the console width)."""

    def __init__(self, stream):
        self.stream, self.pending = stream, ""

    def write(self, text: str) -> int:
        lines = (self.pending + text).split("\n")
        self.pending = lines.pop()
        if lines:
            self.stream.write("".join(line.rstrip(" ") + "\n" for line in lines))
        return len(text)

    def flush(self) -> None:
        if self.pending:
            self.stream.write(self.pending.rstrip(" "))
            self.pending = ""
        self.stream.flush()

    def isatty(self) -> bool:
        return False


# -- train ---------------------------------------------------------------------------------------------
def _cmd_train(args) -> int:
    """`dcpnet train FILE --data D.npz --loss NAME ...`: 0 done and every check line holds, 1 training stopped
    on a non-finite value or a check line does not hold, 2 bad input (nothing written)."""
    import numpy as np

    from .graph import load
    from .train import check_options, load_data, load_params, recheck, save_npz, train

    net = load(args.file)
    dtype = np.float32 if args.dtype == "float32" else np.float64
    check_options(net, args.loss, args.epochs, args.batch, args.lr, args.optimizer, args.val, args.patience)
    _writable(args.out, "--out", args.force)
    if args.plot:
        from .report import plot_ready

        _writable(args.plot, "--plot", args.force)
        plot_ready(args.plot)
    data, _ = load_data(net, args.data, dtype)
    init = load_params(net, args.init, dtype) if args.init else None
    from .report import training_progress

    with training_progress() as progress:
        res = train(net, data, args.loss, epochs=args.epochs, batch=args.batch, lr=args.lr,
                    optimizer=args.optimizer, seed=args.seed, init=init, val=args.val, patience=args.patience,
                    dtype=dtype, progress=progress)
    save_npz(args.out, res.params)
    if args.plot and res.history["train"]:
        from .report import plot_history

        plot_history(res.history, args.plot, f"{os.path.basename(args.file)}: {args.loss}")
    diverged = res.stopped_early and res.reason.startswith("stopped")
    (sys.stderr if diverged else sys.stdout).write(f"{args.file}: {res.reason}\n")
    _print_training(net, res, args)
    checks = recheck(net, res.params, seed=args.seed)
    _print_rechecks(checks)
    return EXIT_FAILED if diverged or not all(c.holds for c in checks) else EXIT_OK


def _writable(path: str, what: str, force: bool) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise DcpnetError(Diagnostic(f"{what}: the folder {folder} does not exist", path, 1, 1))
    if os.path.exists(path) and not force:
        raise DcpnetError(Diagnostic(f"{what}: the file exists; pass --force to overwrite it", path, 1, 1))


def _print_training(net, res, args) -> None:
    from .lattice import Interval
    from .train import violations

    hist = res.history
    parts = [f"{res.steps} steps"]
    if hist["train"]:
        epochs = len(hist["train"])
        parts.append(f"train loss {hist['train'][-1]:.6g} (after {epochs} epoch{'s' if epochs != 1 else ''})")
    if hist["val"]:
        parts.append(f"validation loss {hist['val'][-1]:.6g}")
    print(", ".join(parts))
    print(f"wrote {os.fspath(args.out)}: " + ", ".join(f"{k} {list(v.shape)}" for k, v in res.params.items()))
    if args.plot and hist["train"]:
        print(f"wrote {os.fspath(args.plot)}: the loss curve")
    bad = violations(net, res.params)
    constrained = [n for n in net.params if net.variables[n].bounds != Interval()]
    if bad:
        print("constraints violated: " + "; ".join(bad))
    elif constrained:
        print(f"every constraint holds exactly for the trained params ({', '.join(constrained)})")


def _print_rechecks(checks) -> None:
    if not checks:
        return
    print("check lines, re-verified for the trained params (the certificates are proved under the declared "
          "constraints, which the trained params satisfy exactly, so they still apply):")
    for c in checks:
        mark = "✓" if c.holds else "✗"
        extra = f"; with the trained params pinned: {c.pinned}" if c.pinned else \
            "; a refutation is about the family of networks (its witness may choose other weights)"
        print(f"  {mark} {c.text}: {c.declared}{extra}")


# -- eval ----------------------------------------------------------------------------------------------
def _cmd_eval(args) -> int:
    """`dcpnet eval FILE --params P.npz --data D.npz [--out OUT.npz] [--dtype float32]`."""
    import numpy as np

    from .evaluate import compile_network, forward_in_chunks
    from .graph import load
    from .train.data import load_data, load_params, save_npz

    net = load(args.file)
    dtype = np.float32 if args.dtype == "float32" else np.float64
    params = load_params(net, args.params, dtype)
    data, n = load_data(net, args.data, dtype)
    results = forward_in_chunks(compile_network(net, net.outputs, dtype), params, data, n)
    for name, value in results.items():
        bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
        if bad:
            sys.stderr.write(f"{args.file}: warning: output `{name}` has {bad} non-finite value(s) "
                             f"(an argument outside an atom's domain)\n")
    if args.out:
        save_npz(args.out, results)
        print(f"wrote {os.fspath(args.out)}: " + ", ".join(f"{k} {v.shape}" for k, v in results.items()))
        return EXIT_OK
    for name, value in results.items():
        with np.errstate(all="ignore"):
            print(f"{name}: shape {value.shape}, mean {np.mean(value):.6g}, "
                  f"min {np.min(value):.6g}, max {np.max(value):.6g}")
    return EXIT_OK
