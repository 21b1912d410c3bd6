"""The exceptions fillers raises for bad input: one hierarchy, every class a :class:`ValueError`.

Every failure caused by the data handed to fillers (prototxt text, binary files, arrays, filler parameters,
shapes) is a :class:`FillersError`, naming the place: ``file:line:column``, the layer and blob, the path and
byte offset, or the field and value.  Wrong argument *types* are :class:`TypeError`; the operating system's
own failures (a missing file, a full disk) stay :class:`OSError`.

This module imports nothing from the rest of the package, so every module can import it.
"""
from __future__ import annotations

__all__ = [
    "ArrayError",
    "BudgetError",
    "FileFormatError",
    "FillerError",
    "FillersError",
    "PrototxtError",
    "PrototxtWarning",
    "ShapeWarning",
    "ShapeError",
]


class FillersError(ValueError):
    """Base class of every error fillers raises for bad input data."""


class PrototxtError(FillersError):
    """A net or solver definition that cannot be read.

    The message names the place as ``file:line:column``, then shows the
    offending line and a caret under the column.

    Attributes
    ----------
    reason : str
        What is wrong, without the location.
    filename : str
        The file name, or ``"<string>"`` / ``"<bytes>"`` for in-memory input.
    line, column : int or None
        1-based position, when the problem has one.
    text_line : str or None
        The source line at ``line``.
    """

    def __init__(
        self,
        reason: str,
        filename: str = "<string>",
        line: int | None = None,
        column: int | None = None,
        text_line: str | None = None,
    ) -> None:
        self.reason = reason
        self.filename = filename
        self.line = line
        self.column = column
        self.text_line = text_line
        super().__init__(self._render())

    def _render(self) -> str:
        where = self.filename
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        out = f"{where}: {self.reason}"
        if self.text_line is not None:
            shown = self.text_line.rstrip("\r\n")
            out += "\n    " + shown
            if self.column is not None:
                pad = "".join(c if c == "\t" else " " for c in shown[: self.column - 1])
                out += "\n    " + pad + "^"
        return out

    def __reduce__(self):
        return type(self), (self.reason, self.filename, self.line, self.column, self.text_line)


class PrototxtWarning(UserWarning):
    """Something in a prototxt was skipped or reinterpreted in lenient mode."""


class ShapeWarning(UserWarning):
    """Shape inference passed over something it could not set up (a layer of a type it does not know).

    Attributes
    ----------
    layer : str or None
        The name of the layer passed over.
    index : int or None
        Its index in the net's ``layer`` field (:func:`fillers.prototxt.layer_lines` gives its line).
    """

    def __init__(self, message: str, *, layer: str | None = None, index: int | None = None) -> None:
        super().__init__(message)
        self.layer = layer
        self.index = index

    def __reduce__(self):
        return _rebuild_shape_warning, (str(self), self.layer, self.index)


def _rebuild_shape_warning(message: str, layer: str | None, index: int | None) -> ShapeWarning:
    return ShapeWarning(message, layer=layer, index=index)


class ShapeError(FillersError):
    """A shape that cannot be known from the net alone, or a net that Caffe itself could not set up.

    Attributes
    ----------
    layer : str or None
        The name of the layer concerned, where there is one.
    blob : str or None
        The blob concerned (a top or bottom name), where there is one.
    """

    def __init__(self, message: str, *, layer: str | None = None, blob: str | None = None) -> None:
        super().__init__(message)
        self.layer = layer
        self.blob = blob

    def __reduce__(self):
        return _rebuild_shape_error, (str(self), self.layer, self.blob)


def _rebuild_shape_error(message: str, layer: str | None, blob: str | None) -> ShapeError:
    return ShapeError(message, layer=layer, blob=blob)


class FileFormatError(FillersError):
    """A weights or model file that is not what its format says: truncated, corrupt, trailing garbage,
    or holding something the format cannot.

    Attributes
    ----------
    path : str
        The file (or ``"<bytes>"``).
    format : str
        The format it was read or written as (``"caffemodel"``, ``"h5"``, ``"npz"``, ``"safetensors"`` ...).
    reason : str
        What is wrong.
    offset : int or None
        The byte offset where the problem was found, when known.
    """

    def __init__(self, path: str, format: str, reason: str, offset: int | None = None) -> None:
        self.path = path
        self.format = format
        self.reason = reason
        self.offset = offset
        at = f" at byte {offset}" if offset is not None else ""
        super().__init__(f"{path}: not a valid {format} file{at}: {reason}")

    def __reduce__(self):
        return type(self), (self.path, self.format, self.reason, self.offset)


class FillerError(FillersError):
    """An invalid filler: an unknown type (the valid ones are listed) or a parameter out of range (the field
    and its value are named)."""


class ArrayError(FillersError):
    """An array that cannot be filled as asked: read-only, foreign byte order, self-overlapping, or a
    shape, offset or size that does not fit."""


class BudgetError(FillersError):
    """A net whose parameters would take more memory than the budget (``fill_net``'s ``max_bytes``, by
    default the memory the machine has available), refused before anything is allocated.

    Attributes
    ----------
    needed, budget : int
        The bytes the fill would allocate, and the budget.
    """

    def __init__(self, message: str, *, needed: int, budget: int) -> None:
        super().__init__(message)
        self.needed = needed
        self.budget = budget

    def __reduce__(self):
        return _rebuild_budget_error, (str(self), self.needed, self.budget)


def _rebuild_budget_error(message: str, needed: int, budget: int) -> BudgetError:
    return BudgetError(message, needed=needed, budget=budget)
