"""Read Caffe net and solver definitions (prototxt text or binary protobuf).

Text is parsed by protobuf's own ``text_format``. Before that, one pass with
a tokenizer that splits text as ``text_format`` does walks it along the schema and finds what the
schema does not know: fields that do not exist (fork extensions, removed
fields), enum values that do not exist (fork layer types) and singular fields
given twice. In lenient mode (the default) each of these is blanked out of the
text -- replaced by spaces, so every later line and column stays where it
was -- and reported with one :class:`PrototxtWarning`; with ``strict=True`` the
first one is a :class:`PrototxtError`. The cleaned text is then parsed once, so
the whole load is linear in the size of the file.

Two fork habits are repaired rather than dropped: a V1 ``layers`` block whose
``type`` is a string is read as a current ``layer`` block, and a V1 layer with a
fork's enum type (``ROI_POOLING``) keeps it (as ``"ROIPooling"``) together with
the fork's ``*_param`` fields that current layers know (``roi_pooling_param``).

Every net comes back in the current format: :func:`load_net` runs
:func:`fillers.upgrade.upgrade_net` (Caffe's ``UpgradeNetAsNeeded``).
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np
from google.protobuf import text_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

from . import caffe_pb2
from .caffe_pb2 import caffe_name, is_repeated
from .caffemodel import map_file, read_net, read_varint
from .errors import FileFormatError, PrototxtError, PrototxtWarning

__all__ = [
    "PrototxtError",
    "PrototxtWarning",
    "load_net",
    "load_solver",
    "load_solver_net",
    "layer_lines",
    "parse_text",
    "to_text",
]

Source = Union[str, bytes, bytearray, memoryview, os.PathLike]

#: File name endings that always mean binary protobuf.
BINARY_SUFFIXES = (".caffemodel", ".binaryproto")
#: File name endings that always mean prototxt text, whatever bytes they hold.
TEXT_SUFFIXES = (".prototxt", ".pbtxt", ".txt")


# --------------------------------------------------------------------------
# Reading the source
# --------------------------------------------------------------------------

_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
_FIELD_START = re.compile(r"^\s*(#|[A-Za-z_]\w*\s*[:{<])")


@dataclass
class _Input:
    name: str  # file name for messages
    data: Union[str, bytes]
    path: Path | None = None  # for files
    binary_hint: bool = False
    text_hint: bool = False


def _read_source(source: Source) -> _Input:
    """Turn a path, text or bytes into named content (a missing file raises OSError)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _Input("<bytes>", bytes(source))
    if isinstance(source, str) and _is_inline_text(source):
        return _Input("<string>", source)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"source must be a path, prototxt text or bytes, not {type(source).__name__}"
        )
    path = Path(os.fspath(source))
    with open(path, "rb") as fh:
        data = fh.read()
    suffix = path.name.lower()
    return _Input(str(path), data, path, suffix.endswith(BINARY_SUFFIXES), suffix.endswith(TEXT_SUFFIXES))


def _is_inline_text(s: str) -> bool:
    if "\n" in s or "{" in s:
        return True
    if _DRIVE.match(s) or os.path.exists(s):
        return False
    return bool(_FIELD_START.match(s)) or not s.strip()


def _looks_binary(data: bytes) -> bool:
    """True when ``data`` cannot be prototxt text: control bytes other than white space near its start (every
    binary NetParameter has them: field keys and lengths).  Bytes that are not UTF-8 do not make text binary: a
    comment in Latin-1 or GBK is harmless to Caffe's byte-level parser, and to this one (see :func:`decode_text`)."""
    return any(byte < 32 and byte not in b"\t\n\r\f\v" for byte in data[:4096])


def decode_text(data: bytes) -> str:
    """Prototxt bytes as text: UTF-8, with any byte that is not (a Latin-1 or GBK comment) kept as a lone
    surrogate (``surrogateescape``).  Comments and white space are never read, so such bytes there are
    harmless; inside a string value they are a :class:`PrototxtError` at their line and column, since protobuf's
    Python runtime holds UTF-8 strings only."""
    return data.decode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------
# The schema-guided pre-pass
# --------------------------------------------------------------------------

_NAME = re.compile(r"^\w+$")
_V1_DESC = caffe_pb2.V1LayerParameter.DESCRIPTOR
_V1_TYPE = _V1_DESC.fields_by_name["type"]
_V2_FIELDS = frozenset(f.name for f in caffe_pb2.LayerParameter.DESCRIPTOR.fields
                       if f.message_type is not None and f.name.endswith("_param"))
_ENUM = FieldDescriptor.TYPE_ENUM
_MESSAGE = FieldDescriptor.CPPTYPE_MESSAGE


@dataclass
class _Issue:
    """One thing the schema does not accept, with the text span to blank."""

    reason: str
    start: tuple[int, int]  # 0-based (line, column)
    end: tuple[int, int]  # exclusive


class _Stop(Exception):
    """The pre-pass cannot follow the text; the real parser will report why."""


class _Template(Exception):
    """A ``${...}`` placeholder where a value or name should be."""

    def __init__(self, pos: tuple[int, int], token: str) -> None:
        super().__init__(token)
        self.pos = pos


@dataclass
class _Scan:
    """Result of the pre-pass over one text."""

    issues: list[_Issue] = field(default_factory=list)
    # Top-level NetParameter `layer` / `layers` entries in text order, with position.
    top_order: list[tuple[str, tuple[int, int]]] = field(default_factory=list)
    # (line, column) spans of V1 `layers` keywords whose block has a string type.
    v2_style_layers: list[tuple[int, int]] = field(default_factory=list)
    # Per top-level V1 layer (index in NetParameter.layers): a fork enum type
    # name, and the spans of fork fields that current-format layers know.
    v1_types: dict[int, str] = field(default_factory=dict)
    v1_fields: dict[int, list[tuple[tuple[int, int], tuple[int, int]]]] = field(
        default_factory=dict)


_TOKEN = re.compile(
    r"[a-zA-Z_][0-9a-zA-Z_+-]*"  # an identifier
    r"|([0-9+-]|(\.[0-9]))[0-9a-zA-Z_.+-]*"  # a number
    + "".join(rf"|{q}[^{q}\n\\]*((\\.)+[^{q}\n\\]*)*({q}|\\?$)" for q in "'\"")  # a quoted string
)
_SPACE_OR_COMMENT = re.compile(r"(\s|#.*$)*")


class _Tokens:
    """Prototxt tokens with their 0-based line and column, split as ``text_format``'s tokenizer splits them.

    A token is an identifier, a number, a quoted string (never across lines) or any other single character;
    whitespace and ``#`` comments separate tokens. ``token`` is ``""`` at the end of the text.
    """

    def __init__(self, lines: list[str], line: int = 0, column: int = 0) -> None:
        self.lines = lines
        self.line = line
        self.column = column
        self.token = ""
        self._read_from(column)

    def _read_from(self, column: int) -> None:
        while self.line < len(self.lines):
            text = self.lines[self.line]
            column = _SPACE_OR_COMMENT.match(text, column).end()
            if column < len(text):
                match = _TOKEN.match(text, column)
                self.token = match.group(0) if match else text[column]
                self.column = column
                return
            self.line += 1
            column = 0
        self.token = ""
        self.column = 0

    def next(self) -> None:
        """Move to the next token."""
        self._read_from(self.column + len(self.token))

    def at_end(self) -> bool:
        return not self.token


class _Scanner:
    """Walk prototxt tokens along a message descriptor, the way text_format does."""

    def __init__(self, lines: list[str], desc: Descriptor) -> None:
        self.lines = lines
        self.tok = _Tokens(lines)
        self.desc = desc
        self.scan = _Scan()
        self.end = (0, 0)
        self.v1_count = 0  # top-level V1 `layers` blocks seen
        self.v1_index: int | None = None  # the one being read

    # token helpers -------------------------------------------------------
    def here(self) -> tuple[int, int]:
        return (self.tok.line, self.tok.column)

    def take(self) -> str:
        token = self.tok.token
        if token.startswith("$"):
            raise _Template(self.here(), token)
        line, col = self.here()
        self.tok.next()
        self.end = (line, col + len(token))
        return token

    def expect(self, token: str) -> None:
        if self.tok.token != token:
            raise _Stop
        self.take()

    def accept(self, token: str) -> bool:
        if self.tok.token == token:
            self.take()
            return True
        return False

    # grammar -------------------------------------------------------------
    def run(self) -> _Scan:
        try:
            self.message(self.desc, None, top=True)
        except _Stop:
            pass  # leave the rest to text_format, which gives the exact error
        return self.scan

    def message(self, desc: Descriptor, close: str | None, top: bool = False) -> None:
        seen: set[str] = set()
        while True:
            if close is None:
                if self.tok.at_end():
                    return
            elif self.accept(close):
                return
            elif self.tok.at_end():
                raise _Stop
            self.field(desc, seen, top)

    def field(self, desc: Descriptor, seen: set[str], top: bool) -> None:
        start = self.here()
        if self.tok.token == "[":
            raise _Stop  # extensions / Any: not used by Caffe
        if not _NAME.match(self.tok.token):
            raise _Stop
        name = self.take()
        fd = desc.fields_by_name.get(name)
        in_v1 = self.v1_index is not None and desc is _V1_DESC
        if fd is None and in_v1 and name in _V2_FIELDS:
            self.skip_contents()
            self.scan.v1_fields.setdefault(self.v1_index, []).append((start, self.end))
            self.issue(f'V1 layer field "{name}" is a fork extension (moved to the upgraded '
                       'layer)', start)
        elif fd is None:
            self.skip_contents()
            self.issue(f'unknown field "{name}" in {caffe_name(desc)} (skipped)', start)
        else:
            if top and desc is caffe_pb2.NetParameter.DESCRIPTOR and name in ("layer", "layers"):
                self.scan.top_order.append((name, start))
            if not is_repeated(fd):
                if name in seen:
                    self.issue(f'field "{name}" given more than once in {caffe_name(desc)} '
                               "(the last one counts)", start, blank=False)
                seen.add(name)
            if fd.cpp_type == _MESSAGE:
                self.message_value(fd, start)
            else:
                self.scalar_value(fd, start)
        if not self.accept(","):
            self.accept(";")

    def message_value(self, fd: FieldDescriptor, start: tuple[int, int]) -> None:
        self.accept(":")
        if is_repeated(fd) and self.accept("["):
            if not self.accept("]"):
                while True:
                    self.submessage(fd, start)
                    if self.accept("]"):
                        break
                    self.expect(",")
        else:
            self.submessage(fd, start)

    def submessage(self, fd: FieldDescriptor, start: tuple[int, int]) -> None:
        if self.accept("<"):
            close = ">"
        else:
            self.expect("{")
            close = "}"
        if fd.message_type is caffe_pb2.V1LayerParameter.DESCRIPTOR:
            self.v1_layer_block(start, close)
        else:
            self.message(fd.message_type, close)

    def v1_layer_block(self, start: tuple[int, int], close: str) -> None:
        """A ``layers {}`` block; one with ``type: "String"`` is a current-format layer."""
        if self.v1_block_has_string_type():
            self.scan.v2_style_layers.append(start)
            self.message(caffe_pb2.LayerParameter.DESCRIPTOR, close)
            return
        top_level = self.scan.top_order and self.scan.top_order[-1][1] == start
        if top_level:
            self.v1_index = self.v1_count
            self.v1_count += 1
        try:
            self.message(_V1_DESC, close)
        finally:
            self.v1_index = None

    def v1_block_has_string_type(self) -> bool:
        """Look ahead to the end of the block: is its own `type:` a quoted string?"""
        line, col = self.here()
        tok = _Tokens(self.lines, line, col)
        depth = 0
        while not tok.at_end():
            t = tok.token
            if t in ("{", "<"):
                depth += 1
            elif t in ("}", ">"):
                if depth == 0:
                    return False
                depth -= 1
            elif depth == 0 and t == "type":
                tok.next()
                if tok.token == ":":
                    tok.next()
                return tok.token[:1] in ("'", '"')
            tok.next()
        return False

    def scalar_value(self, fd: FieldDescriptor, start: tuple[int, int]) -> None:
        self.expect(":")
        bad: list[str] = []
        if is_repeated(fd) and self.accept("["):
            if not self.accept("]"):
                while True:
                    self.value(fd, bad)
                    if self.accept("]"):
                        break
                    self.expect(",")
        else:
            self.value(fd, bad)
        if not bad:
            return
        if fd is _V1_TYPE and self.v1_index is not None and _NAME.match(bad[0]) \
                and not bad[0][0].isdigit():
            self.scan.v1_types[self.v1_index] = bad[0]
            self.issue(f"V1 layer type {bad[0]} is not a BVLC type (kept for the upgrade)", start)
        else:
            enum = caffe_name(fd.enum_type)
            self.issue(f'unknown value {", ".join(bad)} of enum {enum} for field "{fd.name}" '
                       "(skipped)", start)

    def value(self, fd: FieldDescriptor, bad: list[str]) -> None:
        token = self.tok.token
        if not token:
            raise _Stop
        if token[0] in "'\"":
            self.take()
            while self.tok.token[:1] in ("'", '"'):  # adjacent literals concatenate
                self.take()
            return
        if token in ("{", "}", "<", ">", "[", "]", ":", ",", ";"):
            raise _Stop
        self.take()
        if fd.type == _ENUM:
            if not token.isascii():  # no enum value is (and protobuf's lookup fails on lone surrogates)
                bad.append(token)
                return
            try:
                text_format.ParseEnum(fd, token)
            except ValueError:
                bad.append(token)

    def skip_contents(self) -> None:
        """Skip an unknown field's value or block (mirrors text_format's skipping).

        Iterative, with the closing tokens of the open blocks and lists on a stack, so that any depth of
        nesting costs no recursion.
        """
        stack: list[str] = []  # "}" / ">" of open blocks, "]" of open lists
        done = self.skip_start(stack)  # True when a value has just ended inside stack[-1]
        while stack:
            if done and stack[-1] == "]":
                if self.accept("]"):
                    stack.pop()  # the list ended: a value of the frame below
                    continue
                self.expect(",")
                done = self.skip_element(stack)
            elif done:
                if not self.accept(","):
                    self.accept(";")
                done = False
            elif self.accept(stack[-1]):
                stack.pop()
                done = True
            elif self.tok.at_end() or self.tok.token in ("}", ">", "["):
                raise _Stop
            else:
                self.take()  # a field name inside the block
                done = self.skip_start(stack)

    def skip_start(self, stack: list[str]) -> bool:
        """Skip the start of a field's value; True when the whole value was skipped, False when it opened a
        block or list (pushed on ``stack``)."""
        if self.accept(":") and self.tok.token not in ("{", "<"):
            if self.accept("["):
                if self.accept("]"):
                    return True
                stack.append("]")
                return self.skip_element(stack)
            self.skip_value()
            return True
        self.open_block(stack)
        return False

    def skip_element(self, stack: list[str]) -> bool:
        """Skip a list element; True unless it opened a block."""
        if self.tok.token in ("{", "<"):
            self.open_block(stack)
            return False
        self.skip_value()
        return True

    def open_block(self, stack: list[str]) -> None:
        if self.accept("<"):
            stack.append(">")
        else:
            self.expect("{")
            stack.append("}")

    def skip_value(self) -> None:
        token = self.tok.token
        if not token or token in ("{", "}", "<", ">", "[", "]", ":", ",", ";"):
            raise _Stop
        self.take()
        while token[0] in "'\"" and self.tok.token[:1] in ("'", '"'):
            self.take()

    def issue(self, reason: str, start: tuple[int, int], blank: bool = True) -> None:
        end = self.end if blank else start
        self.scan.issues.append(_Issue(reason, start, end))


def _blank(lines: list[str], start: tuple[int, int], end: tuple[int, int]) -> None:
    """Replace the text between two (line, column) points by spaces, keeping newlines."""
    (l0, c0), (l1, c1) = start, end
    for ln in range(l0, l1 + 1):
        text = lines[ln]
        a = c0 if ln == l0 else 0
        b = c1 if ln == l1 else len(text.rstrip("\r"))
        lines[ln] = text[:a] + " " * (b - a) + text[b:]


def _placeholder(line: str, col: int) -> str:
    m = re.match(r"\$\{?\w*\}?", line[col:])
    return m.group(0) if m else "$"


def _replace_word(lines: list[str], pos: tuple[int, int], old: str, new: str) -> None:
    ln, col = pos
    text = lines[ln]
    assert text[col : col + len(old)] == old
    lines[ln] = text[:col] + new.ljust(len(old)) + text[col + len(old) :]


# --------------------------------------------------------------------------
# Text and binary parsing
# --------------------------------------------------------------------------


@dataclass
class ParsedText:
    """What :func:`parse_text` returns: the message and facts about its text."""

    message: Message
    #: Top-level ``layer`` / ``layers`` entries of a NetParameter, in text order.
    top_order: list[str] = field(default_factory=list)
    #: Fork enum type names of V1 layers, by index in ``NetParameter.layers``.
    v1_types: dict[int, str] = field(default_factory=dict)
    #: Fork ``*_param`` fields of V1 layers, as LayerParameter fragments, by index.
    v1_fields: dict[int, list[Message]] = field(default_factory=dict)
    #: The line (1-based) of each top-level ``layer`` / ``layers`` entry, in text order.
    layer_lines: list[int] = field(default_factory=list)


def _error_from_parse(e: text_format.ParseError, name: str, lines: list[str]) -> PrototxtError:
    line, col = e.GetLine(), e.GetColumn()
    reason = str(e)
    reason = re.sub(r"^\d+(:\d+)? : ", "", reason)
    reason = reason.replace('"fillers.caffe.', '"caffe.')  # the names Caffe users know
    if "surrogates not allowed" in reason:
        reason = ("a string value that is not UTF-8 (a Latin-1 or GBK name?): protobuf's Python runtime holds "
                  "UTF-8 strings only; re-encode the file as UTF-8")
    text_line = None
    if line is not None and 1 <= line <= len(lines):
        text_line = lines[line - 1]
        prefix = f"'{text_line}': "
        if reason.startswith(prefix):
            reason = reason[len(prefix):]
        if "${" in text_line:
            reason += " (the file is a template: substitute its ${...} placeholders first)"
    return PrototxtError(reason, name, line, col, text_line)


def parse_text(text: str, message_type: type[Message], *, strict: bool = False,
               filename: str = "<string>") -> ParsedText:
    """Parse prototxt ``text`` into a new ``message_type`` without any upgrade.

    Parameters
    ----------
    text : str
        The prototxt.
    message_type : type
        A generated message class, e.g. ``caffe_pb2.NetParameter``.
    strict : bool
        Unknown fields, unknown enum values and repeated singular fields are
        errors instead of warnings.
    filename : str
        Name used in messages.

    Returns
    -------
    ParsedText

    Raises
    ------
    PrototxtError
        On a syntax error or a value the schema does not accept.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    original = text.split("\n")
    lines = list(original)
    scanner = _Scanner(original, message_type.DESCRIPTOR)
    try:
        scan = scanner.run()
    except _Template as t:
        ln, col = t.pos
        raise PrototxtError(
            f"template placeholder {_placeholder(original[ln], col)} is not prototxt; "
            "substitute it first", filename, ln + 1, col + 1, original[ln]) from None
    for pos in scan.v2_style_layers:
        if strict:
            raise PrototxtError('"layers" block with a string type (current-format '
                                'layer written as V1)', filename, pos[0] + 1, pos[1] + 1,
                                original[pos[0]])
        warnings.warn(f'{filename}:{pos[0] + 1}: "layers" block with a string type '
                      'read as a "layer" block', PrototxtWarning, stacklevel=3)
        _replace_word(lines, pos, "layers", "layer")
    rewritten = set(scan.v2_style_layers)
    top_order = ["layer" if pos in rewritten else name for name, pos in scan.top_order]
    for iss in scan.issues:
        ln, col = iss.start
        if strict:
            raise PrototxtError(iss.reason, filename, ln + 1, col + 1, original[ln])
        warnings.warn(f"{filename}:{ln + 1}:{col + 1}: {iss.reason}",
                      PrototxtWarning, stacklevel=3)
        if iss.end != iss.start:
            _blank(lines, iss.start, iss.end)
    msg = message_type()
    try:
        if strict:
            text_format.Parse("\n".join(lines), msg)
        else:
            text_format.Merge("\n".join(lines), msg)
    except text_format.ParseError as e:
        raise _error_from_parse(e, filename, original) from None
    v1_fields = {i: [_fragment(original, span, filename) for span in spans]
                 for i, spans in scan.v1_fields.items()}
    return ParsedText(msg, top_order, scan.v1_types, v1_fields, [pos[0] + 1 for _, pos in scan.top_order])


def _fragment(lines: list[str], span: tuple[tuple[int, int], tuple[int, int]],
              filename: str) -> Message:
    """Parse one field of the text as a LayerParameter on its own (linear in its size, whatever its place in
    the file); the positions of its warnings and errors are moved back to the field's place in the file."""
    (l0, c0), (l1, c1) = span
    if l0 == l1:
        body = lines[l0][c0:c1]
    else:
        body = "\n".join([lines[l0][c0:], *lines[l0 + 1:l1], lines[l1][:c1]])

    def moved(line: int, column: int | None) -> tuple[int, int | None]:  # 1-based, in the fragment
        return line + l0, (column + c0 if line == 1 and column is not None else column)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PrototxtWarning)
        try:
            message = parse_text(body, caffe_pb2.LayerParameter, filename=filename).message
        except PrototxtError as err:
            if err.line is None:
                raise
            line, column = moved(err.line, err.column)
            raise PrototxtError(err.reason, filename, line, column, lines[line - 1]) from None
    for warning in caught:
        text = str(warning.message)
        place = re.match(re.escape(filename) + r":(\d+):(\d+): ", text)
        if place is not None:
            line, column = moved(int(place.group(1)), int(place.group(2)))
            text = f"{filename}:{line}:{column}: {text[place.end():]}"
        warnings.warn(text, warning.category, stacklevel=4)
    return message


_FIXED_SIZE = {1: 8, 5: 4}  # wire types I64 and I32


def _unknown_binary_fields(data: memoryview, desc: Descriptor, path: str, group: int | None = None,
                           pos: int = 0) -> tuple[list[str], int]:
    """Dotted paths of the field numbers ``desc`` does not know, anywhere in its well-formed wire bytes.

    Walks the wire format itself (no protobuf unknown-field API is in every supported runtime), descending
    into the fields of message type; ``group`` is the number of the group being read, which ends the walk at
    its end tag. Returns the paths and the position after the walk.
    """
    found: list[str] = []
    seen: dict[int, int] = {}
    while pos < len(data):
        key, pos = read_varint(data, pos, len(data))
        number, wire = key >> 3, key & 7
        if wire == 4 and number == group:
            break
        fd = desc.fields_by_number.get(number) if desc is not None else None
        if fd is None and desc is not None:
            found.append(f"{path}.#{number}")
        index = seen[number] = seen.get(number, -1) + 1
        if wire == 0:
            pos = read_varint(data, pos, len(data))[1]
        elif wire == 2:
            size, pos = read_varint(data, pos, len(data))
            if fd is not None and fd.cpp_type == _MESSAGE:
                where = f"{path}.{fd.name}" + (f"[{index}]" if is_repeated(fd) else "")
                found += _unknown_binary_fields(data[pos:pos + size], fd.message_type, where)[0]
            pos += size
        elif wire == 3:  # a group: skip it, it is no Caffe message
            pos = _unknown_binary_fields(data, None, path, number, pos)[1]
        else:
            pos += _FIXED_SIZE[wire]
    return found, pos


def _parse_binary(data: bytes, message_type: type[Message], name: str,
                  strict: bool) -> Message:
    msg = message_type()
    try:
        msg.ParseFromString(data)
    except DecodeError as e:
        raise PrototxtError(f"not a binary {message_type.DESCRIPTOR.name} ({e})", name) from None
    _check_unknown(memoryview(data), message_type.DESCRIPTOR, name, strict)
    check_utf8(msg, name)
    return msg


def check_utf8(msg: Message, name: str) -> None:
    """Refuse string fields that are not UTF-8 (protobuf's Python runtime hands them out as ``bytes``, which
    no layer name, key or upgraded text can carry): a :class:`FileFormatError` naming the field."""
    stack = [(msg, msg.DESCRIPTOR.name)]
    while stack:
        message, where = stack.pop()
        for fd, value in message.ListFields():
            if fd.cpp_type == _MESSAGE:
                items = value if fd.is_repeated else [value]
                stack.extend((sub, f"{where}.{fd.name}[{i}]" if fd.is_repeated else f"{where}.{fd.name}")
                             for i, sub in enumerate(items))
            elif fd.type == FieldDescriptor.TYPE_STRING:
                for item in (value if fd.is_repeated else [value]):
                    if isinstance(item, bytes):
                        raise FileFormatError(name, "binary protobuf", f"{where}.{fd.name} is not UTF-8: {item!r} "
                                              "(protobuf's Python runtime holds UTF-8 strings only)")


def _check_unknown(data: memoryview, desc: Descriptor, name: str, strict: bool) -> None:
    """Warn about (strict: reject) the fields of binary message bytes that the schema does not know."""
    unknown = _unknown_binary_fields(data, desc, desc.name)[0]
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        if strict:
            raise PrototxtError(f"unknown fields {shown}", name)
        warnings.warn(f"{name}: {len(unknown)} unknown binary field(s) kept unread: {shown}",
                      PrototxtWarning, stacklevel=4)


def _weights_path(source: Source) -> Path | None:
    """The path of a ``.caffemodel``/``.binaryproto`` file named by ``source``, else None."""
    if isinstance(source, (str, os.PathLike)) and not (isinstance(source, str) and _is_inline_text(source)):
        path = Path(os.fspath(source))
        if path.name.lower().endswith(BINARY_SUFFIXES):
            return path
    return None


def _load(source: Source, message_type: type[Message], strict: bool
          ) -> tuple[ParsedText, _Input]:
    path = _weights_path(source)
    if path is not None and message_type is caffe_pb2.NetParameter:
        # A weights file: mapped and parsed one layer at a time, never read whole into memory.
        net = read_net(path)
        check_utf8(net, str(path))
        _check_unknown(memoryview(map_file(path)), caffe_pb2.NetParameter.DESCRIPTOR, str(path), strict)
        return ParsedText(net), _Input(str(path), b"", path, True)
    inp = _read_source(source)
    data = inp.data
    if isinstance(data, bytes):
        if inp.binary_hint or (not inp.text_hint and _looks_binary(data)):
            return ParsedText(_parse_binary(data, message_type, inp.name, strict)), inp
        data = decode_text(data)
    return parse_text(data, message_type, strict=strict, filename=inp.name), inp


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------

def _float_field_names() -> frozenset[str]:
    """Names that are float fields somewhere in the schema and never double fields."""
    floats: set[str] = set()
    doubles: set[str] = set()

    def walk(desc: Descriptor) -> None:
        for fd in desc.fields:
            if fd.type == FieldDescriptor.TYPE_FLOAT:
                floats.add(fd.name)
            elif fd.type == FieldDescriptor.TYPE_DOUBLE:
                doubles.add(fd.name)
        for nested in desc.nested_types:
            walk(nested)

    for desc in caffe_pb2.DESCRIPTOR.message_types_by_name.values():
        walk(desc)
    return frozenset(floats - doubles)


_FLOAT_FIELDS = _float_field_names()
_FLOAT_LINE = re.compile(r"^(\s*(\w+): )(\S*[.eE]\S*)$", re.MULTILINE)


def _caffe_float(match: re.Match) -> str:
    """Print a float value as protobuf's C++ printer does (6, else 9 significant digits)."""
    prefix, name, value = match.groups()
    if name not in _FLOAT_FIELDS or value in ("inf", "-inf", "nan"):
        return match.group(0)
    x = np.float32(value)
    short = f"{x:.6g}"
    return prefix + (short if np.float32(short) == x else f"{x:.9g}")


def to_text(message: Message) -> str:
    """Prototxt text of ``message``, byte for byte as Caffe (C++ protobuf) prints it.

    ``text_format.MessageToString`` prints float fields by their shortest
    representation (``1.0``, ``0.0039215684``); Caffe prints ``%.6g`` when that
    reads back to the same float, else ``%.9g`` (``1``, ``0.00392156839``).
    """
    return _FLOAT_LINE.sub(_caffe_float, text_format.MessageToString(message))


def layer_lines(source: Source) -> list[int | None]:
    """The line of each layer of the net :func:`load_net` reads from ``source``, by index in its ``layer``
    field: ``None`` for the ``Input`` layer the upgrade makes of ``input`` fields; ``[]`` for a binary net.

    Raises
    ------
    PrototxtError, OSError
        As :func:`load_net`.
    """
    inp = _read_source(source)
    if isinstance(inp.data, bytes) and (inp.binary_hint or _looks_binary(inp.data)):
        return []
    text = inp.data.decode("utf-8") if isinstance(inp.data, bytes) else inp.data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrototxtWarning)  # load_net reports them
        parsed = parse_text(text, caffe_pb2.NetParameter, filename=inp.name)
    return [None] * bool(parsed.message.input) + list(parsed.layer_lines)


def load_net(source: Source, *, strict: bool = False) -> caffe_pb2.NetParameter:
    """Read a Caffe net definition and upgrade it to the current format.

    Parameters
    ----------
    source : str, os.PathLike or bytes
        A path (``.prototxt`` text; ``.caffemodel`` / ``.binaryproto`` or any
        file that is not text is read as binary ``NetParameter``), prototxt
        text (a ``str`` with a newline, a brace or a leading ``field:``), or
        the bytes of either.
    strict : bool
        When False (default), unknown fields, unknown enum values, repeated
        singular fields, V1 ``layers`` blocks with string types and nets that
        mix ``layer`` and ``layers`` are accepted with one
        :class:`PrototxtWarning` each. When True they raise.

    Returns
    -------
    caffe_pb2.NetParameter
        In the current format: ``layer {}`` entries with string types, inputs
        as an ``Input`` layer (see :func:`fillers.upgrade.upgrade_net`).

    Raises
    ------
    PrototxtError
        Syntax errors and values the schema rejects, with ``file:line:column``.
    OSError
        If the file cannot be read.

    Examples
    --------
    >>> net = load_net('name: "tiny" input: "x" input_dim: [1, 3, 8, 8]')
    >>> net.layer[0].type, list(net.layer[0].input_param.shape[0].dim)
    ('Input', [1, 3, 8, 8])
    """
    from .upgrade import upgrade_net_ordered

    parsed, inp = _load(source, caffe_pb2.NetParameter, strict)
    return upgrade_net_ordered(parsed, strict=strict, filename=inp.name)


def load_solver(source: Source, *, strict: bool = False) -> caffe_pb2.SolverParameter:
    """Read a Caffe solver definition, upgraded as Caffe does.

    The legacy ``solver_type`` enum becomes the ``type`` string (``NESTEROV``
    -> ``"Nesterov"`` ...). Nets embedded in the solver (``net_param``,
    ``train_net_param``, ``test_net_param``) are upgraded to the current
    format too. Use :func:`load_solver_net` for the net the solver names.

    Parameters
    ----------
    source : str, os.PathLike or bytes
        As for :func:`load_net`.
    strict : bool
        As for :func:`load_net`.

    Returns
    -------
    caffe_pb2.SolverParameter

    Raises
    ------
    PrototxtError
        On syntax errors, or when both ``solver_type`` and ``type`` are given.
    OSError
        If the file cannot be read.
    """
    return _load_solver(source, strict)[0]


def _load_solver(source: Source, strict: bool) -> tuple[caffe_pb2.SolverParameter, _Input]:
    from .upgrade import upgrade_net, upgrade_solver

    parsed, inp = _load(source, caffe_pb2.SolverParameter, strict)
    try:
        solver = upgrade_solver(parsed.message)
    except ValueError as e:
        raise PrototxtError(str(e), inp.name) from None
    for net in _embedded_nets(solver):
        net.CopyFrom(upgrade_net(net, strict=strict))
    return solver, inp


def _embedded_nets(solver: caffe_pb2.SolverParameter) -> list[caffe_pb2.NetParameter]:
    nets = list(solver.test_net_param)
    if solver.HasField("net_param"):
        nets.append(solver.net_param)
    if solver.HasField("train_net_param"):
        nets.append(solver.train_net_param)
    return nets


def load_solver_net(source: Source, *, strict: bool = False) -> caffe_pb2.NetParameter:
    """Load the training net a solver names, the way Caffe's solver finds it.

    Caffe takes exactly one of ``train_net_param``, ``train_net``,
    ``net_param``, ``net``. A relative ``net``/``train_net`` path is looked up
    from the current directory first (where Caffe itself looks), then next to
    the solver file.

    Parameters
    ----------
    source : str, os.PathLike or bytes
        The solver, as for :func:`load_solver`.
    strict : bool
        As for :func:`load_net`.

    Returns
    -------
    caffe_pb2.NetParameter
        Upgraded to the current format.

    Raises
    ------
    PrototxtError
        If the solver names no net or more than one.
    OSError
        If the named net file cannot be read (the message has the path tried).
    """
    solver, inp = _load_solver(source, strict)
    given = [f for f in ("train_net_param", "train_net", "net_param", "net")
             if solver.HasField(f)]
    if len(given) != 1:
        what = "no net" if not given else "more than one net (" + ", ".join(given) + ")"
        raise PrototxtError(f"solver names {what}; Caffe needs exactly one of "
                            "train_net_param, train_net, net_param, net", inp.name)
    which = given[0]
    if which.endswith("_param"):
        return getattr(solver, which)
    return load_net(_resolve_net_path(getattr(solver, which), inp.path), strict=strict)


def _resolve_net_path(net: str, solver_path: Path | None) -> Path:
    """``net`` as given (from the working directory, as Caffe opens it) if it is there, else beside the
    solver file if it is there, else as given (for the error message)."""
    path = Path(net)
    if path.is_absolute() or solver_path is None or path.exists():
        return path
    beside = solver_path.parent / path
    return beside if beside.exists() else path
