"""ML-ready exports made by the server for a researcher (``POST /api/v1/exports``, docs/EXPORT.md).

Each export lives in ``STATE/exports/<id>/``: ``status.json`` (who asked, what, its state:
``queued``, ``running``, ``done`` or ``failed`` with a message a person can read, and when done
the file list with sizes and sha256) and ``files/``, written by
:func:`radcommons.pipelines.export.export_cohort` (every file written to a temporary name and
renamed). ``status.json`` is replaced atomically too, so a reader never sees half of it.

The access decision is :func:`radcommons.pipelines.export.export_scope` for the requesting
user, taken when the export is asked for: never a sequestered project for a researcher, the
data use agreement required. One export runs at a time per user (a thread each). A failed
export keeps its ``status.json`` (the message says why) and loses its ``files/``: half an export
is nothing to hand out, and a cohort's images can fill the disk. An export left ``queued`` or
``running`` by a stopped server is marked ``failed`` when the server starts, and its files go then.
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


class ExportJobs:
    """The exports of one server: start, read status, resolve a file for download."""

    def __init__(self, root: Path, engine: Any, store: Any) -> None:
        self.root = root
        self.engine = engine
        self.store = store
        self._lock = threading.Lock()
        self._running: dict[str, str] = {}  # user -> export id
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

    def status(self, export_id: str) -> dict[str, Any]:
        path = self.root / export_id / "status.json"
        if not export_id.startswith("rc-export-") or not path.is_file():
            raise KeyError(export_id)
        return json.loads(path.read_text())  # type: ignore[no-any-return]

    def start(self, owner: str, scope: ExportScope, selection: Selection, request: ExportRequest) -> dict[str, Any]:
        with self._lock:
            running = self._running.get(owner)
            if running is not None:
                raise ApiError(409, "export_running", f"your export {running} is still running",
                               f"wait for it (GET /api/v1/exports/{running}), then start the next one")
            export_id = f"rc-export-{secrets.token_hex(8)}"
            self._running[owner] = export_id
        folder = self.root / export_id
        (folder / "files").mkdir(parents=True)
        status = {"id": export_id, "owner": owner, "cohort": selection.label, "cohort_name": selection.name,
                  "format": request.format, "split": request.split, "stratify": list(request.stratify),
                  "seed": request.seed, "bits": request.bits, "size": request.size, "projects": list(scope.projects),
                  "state": "queued", "message": "waiting to start", "created_at": _now(), "files": []}
        write_json_atomic(folder / "status.json", status)
        threading.Thread(target=self._run, args=(owner, scope, selection, request, status),
                         name=f"rc-{export_id}", daemon=True).start()
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
                message += f"; {len(report.failures)} series failed (see README.md)"
            if report.skipped:
                message += f"; {len(report.skipped)} images skipped (see README.md)"
            status.update(state="done", message=message, files=files)
        except UserError as error:
            status.update(state="failed", message=error.message + (f" ({error.hint})" if error.hint else ""))
        except Exception as error:  # noqa: BLE001 - reported to the user, logged for the operator
            log.exception("export %s failed", status["id"])
            status.update(state="failed", message=f"the export failed: {type(error).__name__}: {error}")
        finally:
            status["finished_at"] = _now()
            write_json_atomic(folder / "status.json", status)
            if status["state"] == "failed":
                shutil.rmtree(folder / "files", ignore_errors=True)
            with self._lock:
                self._running.pop(owner, None)

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
