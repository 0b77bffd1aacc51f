"""The files a user points a command at: regular files only.

A folder a user gives may hold more than regular files. Reading a FIFO (named pipe) waits until
some other process writes to it, so a de-identification or ingest run would hang for ever; a
character device such as ``/dev/zero`` never ends; a socket cannot be opened at all. Every command
that walks a user's tree asks :func:`stat_input` before it opens an entry, and reports one that is
not a regular file with the reason, like any other bad file. Symbolic links are followed to
what they name, links to folders too (:func:`walk_files`): an export whose folders are links
is read whole, and a link that leads back up the tree is not followed round for ever.
"""

from __future__ import annotations

import codecs
import errno
import os
import re
import stat
import warnings
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path

from radcommons.errors import AdviceWarning, UserError

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a folder"),
)


class NotARegularFile(OSError):
    """A path a user gave names a FIFO, socket, device or folder where a file was expected."""


def _not_regular(mode: int) -> str:
    kind = next((name for is_kind, name in _KINDS if is_kind(mode)), "a special file")
    return f"{kind}, not a regular file: nothing was read from it"


def unreadable(error: OSError) -> str:
    """The reason given for an input the operating system would not let be read (permission denied,
    an I/O error of its disk): not the file's content, so never called corrupt."""
    return f"unreadable: {error.strerror or error}"


def stat_input(path: str | os.PathLike[str]) -> os.stat_result | str:
    """The status of the regular file ``path`` (links followed), or why it is not one to read."""
    try:
        status = os.stat(path)
    except OSError as error:
        return unreadable(error)
    if stat.S_ISREG(status.st_mode):
        return status
    return f"{_not_regular(status.st_mode)}; leave it out of the folder"


def read_input_bytes(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a file a user named (a key, a token, a clinical table, a mapping ...).

    Like :meth:`pathlib.Path.read_bytes`, and its errors are the same ``OSError`` types, except
    that a FIFO, socket, device or folder raises :class:`NotARegularFile` (its ``strerror`` says
    what the path is) instead of waiting for a writer or reading without end. The file is opened
    without blocking and checked before anything is read.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotARegularFile(errno.EINVAL, _not_regular(mode), os.fspath(path))
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_named_file(path: str | os.PathLike[str]) -> bytes:
    """:func:`read_input_bytes`, with a :class:`~radcommons.errors.UserError` that names the path
    and what is wrong (``PATH: no such file``, ``PATH: a FIFO ...``) in place of an ``OSError``."""
    try:
        return read_input_bytes(path)
    except FileNotFoundError:
        raise UserError(f"{os.fspath(path)}: no such file") from None
    except OSError as error:
        raise UserError(f"{os.fspath(path)}: {error.strerror or error}") from None


#: The largest file the commons takes (1 TiB): an upload's length, a manifest's size beyond it
#: are refused (2**70 bytes were recorded; a download of such a size could never finish).
MAX_FILE_SIZE = 1 << 40

#: The first bytes of files that people save under a text file's name (a workbook named .csv), and
#: what to do ({save}: the formats the reading command takes).
_BINARY_KINDS = (
    (b"PK\x03\x04", "an Excel workbook (.xlsx) or another zip archive", "open it in a spreadsheet program and save "
                                                                           "it {save}"),
    (b"\xd0\xcf\x11\xe0", "an old Excel workbook (.xls)", "open it in a spreadsheet program and save it {save}"),
    (b"%PDF", "a PDF document", "export the table from the system that made the PDF {save}"),
)

#: The start of a file that is markup, not a table of text: a report saved as a web page (an
#: "Excel" export of many hospital systems, whatever its name) or an Excel 2003 XML workbook.
_MARKUP = re.compile(rb"\s*(?:<!doctype html|<html|<table|<\?xml[^>]*>\s*<\?mso-application progid=\"excel)",
                     re.IGNORECASE)


def markup_kind(data: bytes) -> str | None:
    """What a file named as a table really is when it is markup (HTML, Excel 2003 XML), else None:
    read as text, its tags would be taken for a one-column table."""
    head = data[:1024].removeprefix(codecs.BOM_UTF8)
    if not _MARKUP.match(head):
        return None
    return "an Excel 2003 XML workbook" if head.lstrip().startswith(b"<?xml") else "an HTML page (a report saved as a web page)"


def not_text_kind(data: bytes, *, workbooks: bool = False) -> tuple[str, str] | None:
    """What a file named as a table really is when it is a known binary kind or markup, with what
    to do (``workbooks``: the reading command also takes .xlsx); None for anything else. Decoded as
    text such a file gave a misleading message: not UTF-8, one column named ``<html>``, columns missing."""
    save = "as .xlsx or as CSV UTF-8" if workbooks else "as CSV UTF-8"
    found = next(((kind, hint) for magic, kind, hint in _BINARY_KINDS if data.startswith(magic)), None)
    if found is None and (markup := markup_kind(data)) is not None:
        found = (markup, "open it in a spreadsheet program and save it {save}")
    return None if found is None else (found[0], found[1].format(save=save))


class UnreadableText(UserError):
    """Bytes of a text table that cannot be decoded without misreading letters (``line``: where, if known)."""

    def __init__(self, message: str, hint: str, line: int | None = None) -> None:
        super().__init__(message, hint)
        self.line = line


#: A UTF-8 encoded letter beyond ASCII (two to four bytes); cp1252 text rarely holds one.
_UTF8_LETTER = re.compile(rb"[\xC2-\xDF][\x80-\xBF]|[\xE0-\xEF][\x80-\xBF]{2}|[\xF0-\xF4][\x80-\xBF]{3}")


def decode_text_table(data: bytes) -> str:
    """The text of a CSV or TSV table as spreadsheet programs write it: UTF-8 (with or without its
    byte order mark), UTF-16 with its byte order mark (Excel's "Unicode Text"), else cp1252 (what
    they still write on Windows; it decodes any bytes). :class:`UnreadableText` for UTF-16 without
    its mark, damaged UTF-16, and UTF-8 text with some bytes that are not UTF-8 (rows pasted from
    another program): read as cp1252 its UTF-8 letters would become mojibake ("Ã©" for "é")."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as error:
            raise UnreadableText(f"damaged UTF-16 text (byte {error.start})", "save it again as CSV UTF-8") from None
    # Before UTF-8: ASCII text in UTF-16 is valid UTF-8 too, with a NUL after every letter.
    if data[:4096].count(0) > len(data[:4096]) // 4:  # every other byte zero: UTF-16 without its mark
        raise UnreadableText("looks like UTF-16 text without a byte order mark",
                             "save it again as CSV UTF-8 (or as Unicode Text, which has the mark)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        if _UTF8_LETTER.search(data):
            line = data.count(b"\n", 0, error.start) + 1
            raise UnreadableText(
                f"line {line} is not UTF-8 (byte 0x{data[error.start]:02X}) while the file holds UTF-8 text "
                "elsewhere: it mixes two encodings, and its letters would be misread",
                f"retype the special characters of line {line} (quotes, accented letters pasted from another "
                "program) and save the file as CSV UTF-8", line) from None
    return data.decode("cp1252", errors="replace")


def check_text_table(data: bytes, where: str, *, workbooks: bool = False) -> None:
    """A :class:`~radcommons.errors.UserError` (``where`` first) when ``data`` is of a :func:`not_text_kind`."""
    found = not_text_kind(data, workbooks=workbooks)
    if found is not None:
        raise UserError(f"{where}: this is {found[0]}, not a CSV or TSV text table", found[1])


#: Separators a table may hold instead of the one it is read with, as messages name them.
SEPARATOR_NAMES = {",": "commas (,)", ";": "semicolons (;)", "\t": "tabs", "|": "bars (|)"}


def other_separator(header: Sequence[str], delimiter: str) -> str | None:
    """The separator a one-cell ``header`` holds when it is not ``delimiter``, else None: every
    row of such a table lands in one column (a CSV saved by Excel in a European language uses ';')."""
    if len(header) != 1:
        return None
    return next((sep for sep in SEPARATOR_NAMES if sep != delimiter and sep in header[0]), None)


def warn_if_others_can_read(path: str | os.PathLike[str], what: str) -> None:
    """An :class:`~radcommons.errors.AdviceWarning` when a secret file (a key, a token) can be
    read by other users of the machine, as ssh warns of a private key."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if mode & 0o077:
        warnings.warn(AdviceWarning(f"the {what} {os.fspath(path)} can be read by other users of this machine "
                                    f"(mode {stat.S_IMODE(mode):04o}): chmod 600 {os.fspath(path)}"), stacklevel=2)


def check_unique_columns(header: Sequence[str], where: str) -> None:
    """A :class:`~radcommons.errors.UserError` (``where`` first) when a column of a table's header
    is named twice: one of the two columns' values would be silently dropped or overwritten."""
    twice = sorted({name for name in header if name and header.count(name) > 1})
    if twice:
        raise UserError(f"{where}: the column(s) {', '.join(twice)} appear more than once in the header",
                        "name each column once (rename or delete the repeated one)")


def read_input_text(path: str | os.PathLike[str], encoding: str = "utf-8") -> str:
    """:func:`read_input_bytes` decoded (``UnicodeDecodeError`` as from :meth:`pathlib.Path.read_text`)."""
    return read_input_bytes(path).decode(encoding)


def walk_files(root: str | os.PathLike[str], skip: Collection[str | os.PathLike[str]] = ()) -> Iterator[Path]:
    """Every entry under the folder ``root`` that is not a folder, depth first in name order.

    Links to folders are followed (``os.walk`` alone would skip them, and their files would be
    missing from a report that must list every file); a folder reached again through a link
    (the same device and inode) is not read twice, so a link cycle ends. The folders ``skip``
    (a run's own output and state, which a link in the source can lead to) are never entered.
    """
    seen: set[tuple[int, int]] = set()
    for folder in skip:
        try:
            status = os.stat(folder)
        except OSError:  # not there (yet): nothing can lead into it
            continue
        seen.add((status.st_dev, status.st_ino))
    for folder, dirs, files in os.walk(root, followlinks=True):
        try:
            status = os.stat(folder)
        except OSError:
            dirs[:] = []
            continue
        if (status.st_dev, status.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((status.st_dev, status.st_ino))
        dirs.sort()
        for name in sorted(files):
            yield Path(folder) / name


__all__ = [
    "SEPARATOR_NAMES", "NotARegularFile", "UnreadableText", "check_text_table", "check_unique_columns",
    "decode_text_table", "markup_kind", "not_text_kind", "other_separator", "read_input_bytes", "read_input_text",
    "read_named_file", "stat_input", "unreadable", "walk_files",
]
