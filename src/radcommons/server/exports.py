"""ML-ready exports made by the server for a researcher (``POST /api/v1/exports``, docs/EXPORT.md).

Each export lives in ``STATE/exports/<id>/``: ``status.json`` (who asked, what, its state
with a message a person can read (the states are below), and when done the file list with
sizes and sha256) and ``files/``, written by
:func:`radcommons.pipelines.export.export_cohort` (every file written to a temporary name and
renamed). ``status.json`` is replaced atomically too, so a reader never sees half of it.

The access decision is :func:`radcommons.pipelines.export.export_scope` for the requesting
user, taken when the export is asked for: never a sequestered project for a researcher, the
data use agreement required. One export runs at a time per user (a thread each). A failed
export keeps its ``status.json`` (the message says why) and loses its ``files/``: half an export
is nothing to hand out, and a cohort's images can fill the disk. An export left ``queued`` or
``running`` by a stopped server is marked ``failed`` when the server starts, and its files go then.

The states (:data:`STATES`): ``queued``, ``running``, ``done`` (``failed_series`` lists the series
that could not be converted, each with a reason a researcher may read; ``expires_at`` when the
commons keeps files for a time), ``failed`` (``message`` says why), ``expired`` (its files were
removed after the retention, at ``expires_at``) and ``withdrawn`` (its owner may no longer read
a project it holds, ``lost``; its files were removed at ``retired_at``). A deleted export has no
status (404).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
import shutil
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from radcommons.digests import file_sha256
from radcommons.durable import write_atomic
from radcommons.errors import UserError
from radcommons.export.dest import EXPORT_MARK
from radcommons.pipelines.export import ExportScope, Selection, export_cohort
from radcommons.server.errors import ApiError

log = logging.getLogger("radcommons.server.exports")
#: Files of ``files/`` that are bookkeeping, not part of what is handed out.
_INTERNAL = (".done/", EXPORT_MARK)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` to ``path`` as JSON, atomically (readers see the old or the new status, whole)."""
    write_atomic(path, json.dumps(data, indent=1, sort_keys=True))


@dataclass(frozen=True)
class ExportRequest:
    """What to export and how (validated by the route)."""

    format: str
    weights: Mapping[str, float] | None
    split: str
    stratify: Sequence[str]
    seed: int
    bits: int
    size: int | None


#: Every state an export's status may be in (see the module docstring).
STATES = ("queued", "running", "done", "failed", "expired", "withdrawn")
#: States of an export that is over: its status no longer changes, except that its files go
#: (``expired``, ``withdrawn``, or deleted with the export).
FINISHED = ("done", "failed", "expired", "withdrawn")


class ExportJobs:
    """The exports of one server: start, read status, resolve a file for download, withdraw, delete."""

    def __init__(self, root: Path, engine: Any, store: Any, *, retention_hours: float = 0) -> None:
        self.root = root
        self.engine = engine
        self.store = store
        #: hours a finished export's files are kept (0: until the export is deleted)
        self.retention_hours = retention_hours
        self._lock = threading.Lock()
        self._running: dict[str, str] = {}  # user -> export id
        #: statuses the disk refused to take (a full disk): what the export's readers are told
        self._unsaved: dict[str, dict[str, Any]] = {}
        root.mkdir(parents=True, exist_ok=True)
        for folder in root.glob("rc-export-*"):  # left behind by a stopped server
            status_file = folder / "status.json"
            if not status_file.is_file():  # stopped between creating the folder and its status
                shutil.rmtree(folder, ignore_errors=True)
                continue
            status = json.loads(status_file.read_text())
            if status.get("state") in ("queued", "running"):
                status.update(state="failed", finished_at=_now(),
                              message="the server stopped during the export; start it again")
                write_json_atomic(status_file, status)
            if status.get("state") == "failed":
                shutil.rmtree(folder / "files", ignore_errors=True)
        self.expire()

    def status(self, export_id: str) -> dict[str, Any]:
        if export_id in self._unsaved:
            return dict(self._unsaved[export_id])
        path = self.root / export_id / "status.json"
        if not export_id.startswith("rc-export-") or not path.is_file():
            raise KeyError(export_id)
        status: dict[str, Any] = json.loads(path.read_text())
        if self._expired(status):
            ends = self._expires_at(status)
            status = self.retire(status, "expired", f"its files went on {ends[:10]}, {self.retention_hours:g} hours "
                                 "after it finished (the commons' export retention); start a new export",
                                 expires_at=ends)
        elif status.get("state") == "done" and self.retention_hours and status.get("finished_at"):
            status["expires_at"] = self._expires_at(status)  # the retention of now, which the operator may change
        return status

    def start(self, owner: str, scope: ExportScope, selection: Selection, request: ExportRequest) -> dict[str, Any]:
        self.expire()  # the disk the expired exports hold is this one's
        with self._lock:
            running = self._running.get(owner)
            if running is not None:
                raise ApiError(409, "export_running", f"your export {running} is still running",
                               f"wait for it (GET /api/v1/exports/{running}), then start the next one")
            export_id = f"rc-export-{secrets.token_hex(8)}"
            self._running[owner] = export_id
        folder = self.root / export_id
        status = {"id": export_id, "owner": owner, "cohort": selection.label, "cohort_name": selection.name,
                  "format": request.format, "split": request.split, "stratify": list(request.stratify),
                  "seed": request.seed, "bits": request.bits, "size": request.size, "projects": list(scope.projects),
                  "state": "queued", "message": "waiting to start", "created_at": _now(), "files": []}
        try:
            (folder / "files").mkdir(parents=True)
            write_json_atomic(folder / "status.json", status)
            threading.Thread(target=self._run, args=(owner, scope, selection, request, status),
                             name=f"rc-{export_id}", daemon=True).start()
        except BaseException as error:
            shutil.rmtree(folder, ignore_errors=True)
            with self._lock:
                self._running.pop(owner, None)
            if isinstance(error, OSError):
                log.error("export %s could not start: %s", export_id, error)
                raise ApiError(503, "unavailable", f"the commons cannot start an export now ({error.strerror})",
                               "try again later; tell the commons operator if it persists") from None
            raise
        return status

    def _run(self, owner: str, scope: ExportScope, selection: Selection, request: ExportRequest,
             status: dict[str, Any]) -> None:
        folder = self.root / status["id"]
        try:
            status.update(state="running", message="converting the cohort's series", started_at=_now())
            write_json_atomic(folder / "status.json", status)
            report = export_cohort(self.engine, self.store, selection, folder / "files", format=request.format,
                                   scope=scope, weights=request.weights, stratify=request.stratify,
                                   seed=request.seed, bits=request.bits, size=request.size)
            files = self._listing(folder / "files")
            message = f"{len(report.rows)} labelled files"
            if report.failures:
                message = (f"incomplete: {len(report.failures)} series failed, so their files are not in the "
                           f"export (see failures and README.md); {message}")
                for detail in report.details:
                    log.warning("export %s: %s", status["id"], detail)
            if report.skipped:
                message += f"; {len(report.skipped)} images skipped (see README.md)"
            status.update(state="done", message=message, files=files, failures=list(report.failures),
                          failed_series=[failure.as_dict() for failure in report.failed],
                          holds=sorted({str(row.get("project_id")) for row in report.rows}))
        except UserError as error:
            status.update(state="failed", message=error.message + (f" ({error.hint})" if error.hint else ""))
        except OSError as error:  # a full disk: no path of the server's in what the user reads
            log.exception("export %s failed", status["id"])
            status.update(state="failed", message=f"the export failed: the commons could not write it "
                          f"({error.strerror or type(error).__name__}); start it again later")
        except Exception:  # noqa: BLE001 - logged for the operator, told to the user without its text
            # An unexpected error's text can hold the server's paths or a record of another project:
            # the researcher gets the export's id, which the log line carries with the traceback.
            log.exception("export %s failed", status["id"])
            status.update(state="failed", message=f"the export failed on an error of the commons; "
                          f"tell its operators the export id ({status['id']}), which their log names")
        finally:
            status["finished_at"] = _now()
            try:
                if status["state"] == "failed":  # first: a full disk gets its space back for the status
                    shutil.rmtree(folder / "files", ignore_errors=True)
                self._save(status)
            finally:
                with self._lock:
                    self._running.pop(owner, None)

    def _save(self, status: dict[str, Any]) -> None:
        """Write ``status``; when the disk refuses it, log that and keep it in memory, so readers
        are told the truth rather than the last state written (``running`` for ever)."""
        try:
            write_json_atomic(self.root / status["id"] / "status.json", status)
        except OSError as error:
            log.error("export %s: cannot write its status (%s); keeping it in memory", status["id"], error)
            self._unsaved[status["id"]] = dict(status)
        else:
            self._unsaved.pop(status["id"], None)

    def retire(self, status: dict[str, Any], state: str, message: str, **fields: Any) -> dict[str, Any]:
        """Remove a finished export's files, keeping its status (``state``, ``message``: why; ``fields``
        added to it, e.g. ``lost``)."""
        shutil.rmtree(self.root / status["id"] / "files", ignore_errors=True)
        status = {**status, **fields, "state": state, "message": message, "files": [], "retired_at": _now()}
        self._save(status)
        return status

    def _expires_at(self, status: Mapping[str, Any]) -> str:
        """When a finished export's files go: ``finished_at`` plus the retention (ISO 8601, UTC)."""
        finished = dt.datetime.fromisoformat(status["finished_at"])
        return (finished + dt.timedelta(hours=self.retention_hours)).isoformat(timespec="seconds")

    def _expired(self, status: Mapping[str, Any]) -> bool:
        if not self.retention_hours or status.get("state") != "done" or not status.get("finished_at"):
            return False
        return dt.datetime.now(dt.timezone.utc) > dt.datetime.fromisoformat(self._expires_at(status))

    def expire(self) -> None:
        """Remove the files of every export finished longer ago than the retention."""
        for folder in self.root.glob("rc-export-*"):
            try:
                self.status(folder.name)  # expires it when due
            except (KeyError, OSError, ValueError):
                continue

    def delete(self, export_id: str) -> None:
        """Delete an export, status and files (409 while it runs)."""
        with self._lock:
            if export_id in self._running.values():
                raise ApiError(409, "export_running", f"export {export_id} is still running",
                               f"wait until GET /api/v1/exports/{export_id} says done or failed, then delete it")
            self._unsaved.pop(export_id, None)
            shutil.rmtree(self.root / export_id, ignore_errors=True)

    @staticmethod
    def _listing(files: Path) -> list[dict[str, Any]]:
        found = []
        for path in sorted(p for p in files.rglob("*") if p.is_file()):
            relative = path.relative_to(files).as_posix()
            if relative.startswith(_INTERNAL) or path.name.endswith(".part"):
                continue
            found.append({"path": relative, "size": path.stat().st_size, "sha256": file_sha256(path)})
        return found

    def file(self, status: Mapping[str, Any], relative: str) -> tuple[Path, dict[str, Any]]:
        """The file ``relative`` of a finished export and its listing entry (``ValueError``: a bad path)."""
        pure = PurePosixPath(relative)
        if not relative or pure.is_absolute() or "\\" in relative or any(p in ("..", ".", "") for p in
                                                                        relative.split("/")):
            raise ValueError(relative)
        entry = next((f for f in status.get("files", ()) if f["path"] == relative), None)
        if entry is None:
            raise KeyError(relative)
        return self.root / status["id"] / "files" / pure, entry
