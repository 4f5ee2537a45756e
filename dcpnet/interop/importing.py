"""`dcpnet import MODEL.pt2|MODEL.onnx -o NAME.net`: read a model, write NAME.net and NAME.npz, summarise.

>>> summary_lines(Imported("", {}, [("input", "x", "x"), ("param", "0.weight", "p_0_weight")], []))
['mapped 1 input, 1 param', '  param  0.weight -> p_0_weight', '  (1 name kept as it is)']
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import DcpnetError, Diagnostic, write_atomically
from ..limits import Limit, as_bad_input, run_limited
from .netwriter import Imported

READERS = {".pt2": "torch", ".onnx": "onnx"}
SHOWN = 24                      # renamed names listed in the summary
IMPORT_SECONDS = 300.0          # wall clock of one model's reading ($DCPNET_IMPORT_SECONDS)
IMPORT_MEMORY = 16 << 30        # address space the reading may add ($DCPNET_IMPORT_MEMORY_MB)


def read_model(path: str) -> Imported:
    """The model at `path`, by its suffix: `.pt2` (torch.export.save) or `.onnx`."""
    kind = READERS.get(Path(path).suffix.lower())
    if kind is None:
        raise DcpnetError(Diagnostic(f"cannot tell the format of `{path}`: expected a .pt2 file (torch.export.save) "
                                     f"or an .onnx file", path, 1, 1))
    if not os.path.isfile(path):
        raise DcpnetError(Diagnostic("cannot read the file: no such file", path, 1, 1))
    _need(kind, path)
    if kind in sys.modules:     # a Python session that holds the library already: forking it is not safe
        return _load(kind, path)
    seconds = float(os.environ.get("DCPNET_IMPORT_SECONDS", IMPORT_SECONDS))
    memory = int(os.environ.get("DCPNET_IMPORT_MEMORY_MB", IMPORT_MEMORY >> 20)) << 20
    try:       # the exporter's library reads an outside file: a wall clock and a memory cap around it
        return run_limited(_load, (kind, path), seconds=seconds, memory=memory, what=f"reading the {kind} model")
    except Limit as limit:
        raise as_bad_input(limit, path) from None


def _load(kind: str, path: str) -> Imported:
    if kind == "torch":
        from .from_torch import load_pt2

        return load_pt2(path)
    from .from_onnx import load_onnx

    return load_onnx(path)


def _need(kind: str, path: str) -> None:
    import importlib.util

    modules = ["torch"] if kind == "torch" else ["onnx"]
    for m in modules:
        if importlib.util.find_spec(m) is None:
            raise DcpnetError(Diagnostic(f"reading this model needs {m}: pip install 'dcpnet[{kind}]'", path, 1, 1))


def write_imported(imported: Imported, net_path: str) -> str:
    """Write NET_PATH and the .npz beside it (each atomically); returns the .npz path."""
    from ..train.data import save_npz

    if not net_path.endswith(".net"):
        raise DcpnetError(Diagnostic("-o: the output must be a .net file", net_path, 1, 1))
    imported.network(net_path)                 # the text must build before anything is written
    npz_path = net_path[:-len(".net")] + ".npz"
    save_npz(npz_path, imported.arrays)
    write_atomically(net_path, lambda fh: fh.write(imported.text.encode("utf-8")))
    return npz_path


def summary_lines(imported: Imported) -> list[str]:
    counts: dict[str, int] = {}
    for kind, _, _ in imported.mapping:
        counts[kind] = counts.get(kind, 0) + 1
    head = "mapped " + ", ".join(f"{n} {k}{'s' if n > 1 else ''}" for k, n in counts.items())
    rows = [f"  {kind:<6} {src} -> {name}" for kind, src, name in imported.mapping if src != name]
    same = len(imported.mapping) - len(rows)
    if len(rows) > SHOWN:    # a large model: the first few, then the count (the declarations list them all)
        rows = rows[:SHOWN] + [f"  … and {len(rows) - SHOWN} more, declared in the .net file"]
    tail = [f"  ({same} name{'s' if same > 1 else ''} kept as {'they are' if same > 1 else 'it is'})"] if same else []
    return [head, *rows, *tail, *(f"note: {n}" for n in imported.notes)]


def run_import(model: str, out: str) -> list[str]:
    """Read, write, and the lines of the summary to print."""
    imported = read_model(model)
    npz = write_imported(imported, out)
    layers = sum(1 for line in imported.text.splitlines() if " = " in line and not line.startswith("#"))
    return [f"wrote {out} ({layers} lines) and {npz} ({len(imported.arrays)} arrays)", *summary_lines(imported)]
