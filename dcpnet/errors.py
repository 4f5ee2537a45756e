"""One family of errors for bad input, each carrying the file, line, column and source line it is about."""
from __future__ import annotations

from dataclasses import dataclass

SHOWN_WIDTH = 160          # longer source lines are shown as a window around the column


@dataclass
class Diagnostic:
    """One problem at one place; `line` and `col` count from 1 (0 when the input as a whole is at fault)."""

    message: str
    file: str = "<input>"
    line: int = 0
    col: int = 0
    source_line: str = ""

    def format(self) -> str:
        """`FILE:LINE:COL: error: MESSAGE`, then the source line and a caret under the column.

        >>> print(Diagnostic("unknown name `z`", "f.net", 2, 5, "y = z + 1").format())
        f.net:2:5: error: unknown name `z`
            y = z + 1
                ^
        """
        head = f"{self.file}:{self.line}:{self.col}: error: {self.message}"
        if not self.source_line:
            return head
        # control characters would garble the terminal: show them as '?' (one column each, as counted)
        shown = "".join(c if c.isprintable() or c == "\t" else "?" for c in self.source_line)
        at = max(self.col, 1) - 1
        if len(shown) > SHOWN_WIDTH:  # a very long line: show a window around the column
            start = max(0, min(at - SHOWN_WIDTH // 2, len(shown) - SHOWN_WIDTH))
            end = start + SHOWN_WIDTH
            shown = ("…" if start else "") + shown[start:end] + ("…" if end < len(shown) else "")
            at = at - start + (1 if start else 0)
        # keep the tabs of the source line in the caret line, so the caret lands under the column
        pad = "".join(c if c == "\t" else " " for c in shown[:at])
        pad += " " * (at - len(pad))
        return f"{head}\n    {shown}\n    {pad}^"


class DcpnetError(Exception):
    """Bad input: one or more diagnostics. The CLI prints them all and exits with code 2."""

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic):
        self.diagnostics = diagnostics if isinstance(diagnostics, list) else [diagnostics]
        super().__init__(self.format())

    def format(self) -> str:
        return "\n".join(d.format() for d in self.diagnostics)


class SourceText:
    """The text of a file, able to make diagnostics at a line and column of it."""

    def __init__(self, text: str, file: str = "<input>"):
        self.text = text
        self.file = file
        # lines end at LF, CRLF or CR only (as the parser counts them), not at the other characters
        # str.splitlines() breaks at (form feed, U+2028, ...)
        self.lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")

    def diagnostic(self, message: str, line: int, col: int) -> Diagnostic:
        source = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        return Diagnostic(message, self.file, line, col, source)

    def error(self, message: str, line: int, col: int) -> DcpnetError:
        return DcpnetError(self.diagnostic(message, line, col))


def did_you_mean(name: str, choices) -> str:
    """' (did you mean `relu`?)' for a close match, else ''."""
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean `{close[0]}`?)" if close else ""


def write_atomically(path, write, what: str = "the file") -> None:
    """Write a file through `write(binary file)` into a temporary file beside it, then rename it into place:
    no reader ever sees half a file, and a failure leaves nothing behind. The file gets the permissions a
    plain `open` would give it (0o666 less the umask; mkstemp's own are 0o600). An OSError is bad input.
    """
    import os
    import tempfile

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".dcpnet-", suffix=os.path.splitext(path)[1], dir=folder)
    except OSError as err:
        raise DcpnetError(Diagnostic(f"cannot write {what}: {err.strerror or err}", path, 1, 1)) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except OSError as err:
        _remove(tmp)
        raise DcpnetError(Diagnostic(f"cannot write {what}: {err.strerror or err}", path, 1, 1)) from None
    except BaseException:
        _remove(tmp)
        raise


def _umask() -> int:
    import os

    mask = os.umask(0)          # the only way to read it is to set it: put it straight back
    os.umask(mask)
    return mask


def _remove(tmp: str) -> None:
    import os

    try:
        os.unlink(tmp)
    except OSError:
        pass
