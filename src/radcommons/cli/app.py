"""The root ``radcommons`` application and its error handling."""

from __future__ import annotations

import errno
import inspect
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from radcommons import __version__
from radcommons.cli import (
    admin_cmd,
    config_cmd,
    contribute_cmd,
    db_cmd,
    deid_cmd,
    dictionary_cmd,
    download_cmd,
    export_cmd,
    gateway_cmd,
    harmonize_cmd,
    ingest_cmd,
    objects_cmd,
    serve_cmd,
    synth_cmd,
)
from radcommons.errors import AdviceWarning, UserError

if TYPE_CHECKING:
    from pydantic import ValidationError

app = typer.Typer(
    name="radcommons",
    help="RadCommons: contribute, curate, find and export medical imaging data.\n\n"
    "Example: radcommons synth var/synth --sites 2 --patients 5 --seed 1",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(config_cmd.app, name="config")
app.add_typer(dictionary_cmd.app, name="dictionary")
app.add_typer(db_cmd.app, name="db")
app.add_typer(objects_cmd.app, name="objects")
app.add_typer(harmonize_cmd.app, name="harmonize")
app.command("synth")(synth_cmd.synth)
app.command("ingest")(ingest_cmd.ingest)
app.command("serve")(serve_cmd.command)
app.command("contribute")(contribute_cmd.command)
app.command("gateway")(gateway_cmd.command)
app.add_typer(admin_cmd.app, name="admin")
app.command("keygen")(deid_cmd.keygen)
app.command("deid")(deid_cmd.deid)
app.command("download")(download_cmd.command)
app.command("export")(export_cmd.export)

# soft_wrap: never break a digest, path or URL across lines in a message.
err_console = Console(stderr=True, soft_wrap=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"radcommons {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """RadCommons command line."""


def command_for_people() -> Any:
    """The click command of :data:`app`, its help made for a terminal of any width.

    Typer 0.29 in rich mode keeps every line break of a help paragraph, so the docstrings, wrapped
    for the source, came out broken mid-sentence on an 80-column terminal; it shows a required
    argument by its parameter name (``{src}``) where the help text says ``SRC``; and it gives a
    flag a type, ``--dry-run <bool>``, as if it took a value. Paragraphs are joined into one line
    each (a paragraph that starts with click's ``\\b`` keeps its lines), arguments are shown
    upper-case as the help texts name them, and flags show no type.
    """
    command = typer.main.get_command(app)
    _tidy(command)
    return command


def _tidy(command: Any) -> None:
    if command.help:
        paragraphs = inspect.cleandoc(command.help).split("\n\n")
        command.help = "\n\n".join(p if p.startswith("\b") else " ".join(p.split("\n")) for p in paragraphs)
    # the help option is made (and kept) on first use; made now, it is tidied as the others
    help_option = command.get_help_option(command.context_class(command))
    for param in [*command.params, *([help_option] if help_option is not None else [])]:
        if getattr(param, "param_type_name", "") == "argument" and param.metavar is None:
            param.metavar = param.name.upper()
        elif getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    for sub in (getattr(command, "commands", None) or {}).values():
        _tidy(sub)


def _report_validation_error(error: "ValidationError") -> None:
    """Print a pydantic error as one line per field, naming where the value came from."""
    is_settings = error.title == "Settings"
    what = "invalid configuration" if is_settings else f"invalid {error.title}"
    err_console.print(f"[bold red]error:[/] {what}", highlight=False)
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(value)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown setting"
            if is_settings:
                from radcommons.settings import Settings

                message += f" (known: {', '.join(Settings.model_fields)})"
        elif "input" in item and not isinstance(item["input"], (dict, list)):
            shown = item["input"]
            if is_settings and isinstance(shown, str):
                from radcommons.settings import mask_url_password

                shown = mask_url_password(shown)
            message += f" (got {shown!r})"
        err_console.print(f"  {field}: {message}", highlight=False)
    if is_settings:
        from radcommons.settings import config_file

        err_console.print(
            f"[yellow]hint:[/] fix the RADCOMMONS_<SETTING> environment variable or the "
            f"setting in {config_file()}",
            highlight=False,
        )


#: What to do about an OSError of a path, by errno.
_PATH_HINTS = {
    errno.EEXIST: "a file is where a folder is needed (or one already exists there): choose another path",
    errno.ENOTDIR: "a file is where a folder is needed: choose another path",
    errno.EISDIR: "a folder is where a file is needed: give the path of a file",
    errno.ENOENT: "check the path",
    errno.EACCES: "check the permissions of the path",
    errno.EPERM: "check the permissions of the path",
    errno.ENOSPC: "the disk is full: free some space, then run the same command again",
    errno.EROFS: "the file system is read-only: choose a path on a writable one",
    errno.ENAMETOOLONG: "choose a shorter path",
}


def _environment_error(error: Exception) -> tuple[str, str] | None:
    """(message, hint) for an error of the machine rather than of radcommons: a path that cannot
    be used (a file where a folder is needed, a full disk), a service that cannot be reached, a
    number too large; None for anything else (a bug, reported as one)."""
    if isinstance(error, OSError):
        return os_error(error)
    if isinstance(error, OverflowError):
        return f"a number is out of range ({error})", "give a smaller value"
    if isinstance(error, UnicodeError):
        return f"text that is not UTF-8 ({error})", "save the file as UTF-8 text (without a byte order mark)"
    return None


def os_error(error: OSError, *, written: str | os.PathLike[str] | None = None, option: str = "",
             example: str = "NAME") -> tuple[str, str]:
    """(message, hint) for an OSError: the one way the CLI puts one into words, for :func:`main`
    (any command) and for a command that knows which of its files it was writing: that one passes
    it as ``written`` (given as ``option``; ``example``, a file name for the hint when it is a
    folder), so the message names the option and what is wrong with the path itself rather than
    with a temporary file beside it."""
    reason = error.strerror or str(error) or type(error).__name__
    if written is not None:
        where = f"{option} {os.fspath(written)}".strip()
        shape = _not_a_file(written, example)
        if shape is not None:
            return f"{where}: {shape[0]}", shape[1]
        hint = _PATH_HINTS.get(error.errno or 0, "choose an output path in a folder you may write to, on a disk "
                                                 "with room")
        return f"{where}: cannot write: {reason}", hint
    if error.filename is not None:
        where = os.fsdecode(error.filename)
        if error.filename2 is not None:
            where += f" -> {os.fsdecode(error.filename2)}"
        hint = _PATH_HINTS.get(error.errno or 0, "check the path, then run again")
        if error.errno == errno.ENOTDIR:  # say which of its folders is a file
            shape = _not_a_file(os.fsdecode(error.filename), example)
            if shape is not None:
                return f"{where}: {reason} ({shape[0]})", shape[1]
        elif error.errno == errno.EISDIR:  # the target of a rename, else the path itself
            folder = os.fsdecode(error.filename2 if error.filename2 is not None else error.filename)
            return f"{where}: {reason} ({folder} is a folder, not a file)", hint
        return f"{where}: {reason}", hint
    if error.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EIO):  # a write with no path in the error
        return f"cannot write: {reason}", _PATH_HINTS.get(error.errno, "check the disk, then run the same "
                                                                        "command again")
    return f"{type(error).__name__}: {error}", "check the address and that the service or disk it names works"


def _not_a_file(path: str | os.PathLike[str], example: str) -> tuple[str, str] | None:
    """(what is wrong, hint) when ``path`` cannot be a file: it is a folder, or one of the folders
    it should be in is a file; None when neither (the error was something else)."""
    target = Path(path)
    if target.is_dir():
        return "a folder, not a file", f"give a file's path, e.g. {target / example}"
    for folder in target.parents:
        if folder.exists():
            if not folder.is_dir():
                return f"{folder} is a file, not a folder", "give a path in a folder"
            break
    return None


def _show_advice(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: object = None, line: str | None = None) -> None:
    """Warnings for people (:class:`AdviceWarning`) as one line, ``warning: ...``; others as Python shows them."""
    if issubclass(category, AdviceWarning):
        err_console.print(f"[yellow]warning:[/] {message}", highlight=False)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)  # type: ignore[arg-type]


_python_showwarning = warnings.showwarning


class Terminated(BaseException):
    """SIGTERM (``kill``, ``timeout``, a service stopped), raised in the main thread like Ctrl-C's
    KeyboardInterrupt so that the command cleans up as it unwinds: helper processes stopped,
    temporary files removed. Python's default ended the process at once, and the helpers' resource
    tracker then warned of leaked semaphores on the terminal."""


def _terminated(_signum: int, _frame: object) -> None:
    raise Terminated


def main() -> None:
    """Entry point: run the app, turning expected errors into a message and exit code 2."""
    warnings.showwarning = _show_advice
    signal.signal(signal.SIGTERM, _terminated)
    try:
        # Non-standalone mode returns typer.Exit's code instead of exiting.
        result = command_for_people()(standalone_mode=False)
    except UserError as error:
        err_console.print(f"[bold red]error:[/] {error.message}", highlight=False)
        if error.hint:
            err_console.print(f"[yellow]hint:[/] {error.hint}", highlight=False)
        sys.exit(2)
    except typer.Exit as exit_:
        sys.exit(exit_.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Terminated:
        err_console.print("terminated")
        sys.exit(143)
    except Exception as error:
        # pydantic is imported only by the commands that read settings or models: a
        # ValidationError can come only from them
        validation_error = getattr(sys.modules.get("pydantic"), "ValidationError", None)
        if validation_error is not None and isinstance(error, validation_error):
            _report_validation_error(error)
            sys.exit(2)
        # Usage errors (click.ClickException) arrive here in non-standalone mode.
        # Recent typer vendors its own copy of click, so match on behaviour, not class.
        show = getattr(error, "show", None)
        exit_code = getattr(error, "exit_code", None)
        if callable(show) and isinstance(exit_code, int):
            show()
            sys.exit(exit_code)
        if os.environ.get("RADCOMMONS_DEBUG"):
            raise
        explained = _environment_error(error)
        if explained is not None:
            err_console.print(f"[bold red]error:[/] {explained[0]}", highlight=False)
            err_console.print(f"[yellow]hint:[/] {explained[1]}", highlight=False)
            sys.exit(2)
        # A bug of ours: one clear line, and the traceback only on request.
        err_console.print(
            f"[bold red]internal error:[/] {type(error).__name__}: {error}", highlight=False
        )
        err_console.print(
            "[yellow]hint:[/] this is a bug in radcommons; rerun with RADCOMMONS_DEBUG=1 for the "
            "traceback and report it",
            highlight=False,
        )
        sys.exit(3)
    # Commands return None; an int here is an exit code from typer.Exit / ctx.exit.
    if isinstance(result, int) and not isinstance(result, bool):
        if result == 130:  # Typer's answer to Ctrl-C (KeyboardInterrupt), which it gives without a word
            err_console.print("interrupted")
        sys.exit(result)
