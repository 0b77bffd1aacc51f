"""The researcher's client: ``radcommons.Client(url, token)``.

Query and facet the commons, save and freeze cohorts, get manifests and the whole index, and
download files (parallel, resumable, verified; see :mod:`radcommons.client.download`)::

    import radcommons

    client = radcommons.Client("https://commons.example.org", token_file="~/.radcommons.token")
    client.accept_dua()                      # once, after reading client.dua()["text"]
    women = {"=": {"sex": "Female"}}
    client.count("case", women)
    client.facets("series", ["modality", "case.age_at_index"], bins={"case.age_at_index": [0, 18, 65]})
    cohort = client.save_cohort("women", "case", women, freeze=True)
    client.download(cohort["identifier"], "data/women", workers=8)

Every refusal raises a :class:`~radcommons.client.errors.CommonsError` with the server's
message and hint; an expired token is an :class:`AuthenticationError` saying to get a new one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from radcommons.client.commons import CommonsClient, _to_error, read_token_file
from radcommons.client.download import (
    DownloadReport,
    FileEntry,
    ProgressCallback,
    download_entries,
    entries_of,
    read_manifest,
)
from radcommons.client.errors import AuthenticationError, CommonsError, PermissionDeniedError
from radcommons.export.dest import DOWNLOAD_MARK, check_claim, claim_dest

Filter = Mapping[str, Any] | None
Sort = Sequence[tuple[str, str]] | Sequence[str]


def _sort(sort: Sort) -> list[dict[str, str]]:
    """``[("age_at_index", "desc")]`` or ``["-age_at_index"]`` -> the API's sort keys."""
    keys = []
    for item in sort:
        if isinstance(item, str):
            keys.append({"field": item.lstrip("-"), "direction": "desc" if item.startswith("-") else "asc"})
        else:
            keys.append({"field": item[0], "direction": item[1]})
    return keys


class Client(CommonsClient):
    """A researcher's connection to a commons (a token is optional for ``summary`` and ``facets``)."""

    def __init__(self, url: str, token: str | None = None, *, token_file: str | os.PathLike[str] | None = None,
                 **kwargs: Any) -> None:
        if token is None and token_file is not None:
            token = read_token_file(Path(token_file).expanduser())
        super().__init__(url, token or "", **kwargs)
        if not token:
            del self._http.headers["Authorization"]

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    # ------------------------------------------------------------------ agreement, counts

    def dua(self) -> dict[str, Any]:
        """The data use agreement: ``version``, ``text`` and whether you accepted it."""
        return self._json("GET", "/dua")  # type: ignore[no-any-return]

    def accept_dua(self) -> dict[str, Any]:
        """Accept the current data use agreement (needed once before reading records)."""
        return self._json("POST", "/dua/accept")  # type: ignore[no-any-return]

    def summary(self) -> dict[str, Any]:
        return self._json("GET", "/summary")  # type: ignore[no-any-return]

    def projects(self) -> list[dict[str, Any]]:
        return self._json("GET", "/projects")  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ records

    def query(self, node: str, filter: Filter = None, *, fields: Sequence[str] | None = None, sort: Sort = (),
              limit: int = 100, cursor: str | None = None, count: bool = False,
              facets: Sequence[str] | None = None) -> dict[str, Any]:
        """One page: ``{"rows", "next_cursor", "fields"}`` (and ``count``, ``facets`` when asked)."""
        body = {"filter": filter, "fields": list(fields) if fields else None, "sort": _sort(sort), "limit": limit,
                "cursor": cursor, "count": count, "facets": list(facets) if facets else None}
        return self._json("POST", f"/query/{node}", json=body)  # type: ignore[no-any-return]

    def rows(self, node: str, filter: Filter = None, *, fields: Sequence[str] | None = None, sort: Sort = (),
             page_size: int = 1000) -> Iterator[dict[str, Any]]:
        """Every matching row, following the cursor."""
        cursor = None
        while True:
            page = self.query(node, filter, fields=fields, sort=sort, limit=page_size, cursor=cursor)
            yield from page["rows"]
            cursor = page["next_cursor"]
            if cursor is None:
                return

    def count(self, node: str, filter: Filter = None) -> int:
        return int(self.query(node, filter, fields=["id"], limit=1, count=True)["count"])

    def facets(self, node: str, fields: Sequence[str], filter: Filter = None, *,
               bins: Mapping[str, Sequence[float]] | None = None, top: int | None = None) -> dict[str, Any]:
        """``{field: [{"value", "count"}, ...]}`` (counts may be None when suppressed)."""
        body = {"filter": filter, "fields": list(fields), "bins": {k: list(v) for k, v in (bins or {}).items()} or None,
                "top": top}
        return self._json("POST", f"/facets/{node}", json=body)["facets"]  # type: ignore[no-any-return]

    def export(self, node: str, dest: str | os.PathLike[str], filter: Filter = None, *, format: str = "csv",
               fields: Sequence[str] | None = None, sort: Sort = ()) -> Path:
        """Write every matching record to ``dest`` as csv, tsv, json, jsonl or parquet."""
        body = {"filter": filter, "fields": list(fields) if fields else None, "sort": _sort(sort)}
        return self._save("POST", f"/export/{node}", dest, params={"format": format}, json=body)

    def index_parquet(self, dest: str | os.PathLike[str]) -> Path:
        """The whole index of your projects (one row per series) for DuckDB or pandas."""
        return self._save("GET", "/index.parquet", dest)

    def _save(self, method: str, path: str, dest: str | os.PathLike[str], **kwargs: Any) -> Path:
        target = Path(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        with self._http.stream(method, path, **kwargs) as response:
            if response.status_code >= 400:
                response.read()
                raise _to_error(response)
            with open(partial, "wb") as handle:
                for chunk in response.iter_bytes():
                    handle.write(chunk)
        os.replace(partial, target)
        return target

    # ------------------------------------------------------------------ manifests, cohorts

    def manifest(self, node: str = "instance", filter: Filter = None) -> list[dict[str, Any]]:
        """The files of the matching records: object_id (sha256), size, project and UIDs."""
        return self._json("POST", "/manifest", params={"format": "json"},  # type: ignore[no-any-return]
                          json={"node": node, "filter": filter})

    def save_cohort(self, name: str, node: str, filter: Filter = None, *, description: str = "",
                    freeze: bool = False) -> dict[str, Any]:
        """Save a named query (``freeze=True``: and freeze it, returning the snapshot)."""
        body = {"name": name, "node": node, "filter": filter, "description": description, "freeze": freeze}
        return self._json("POST", "/cohorts", json=body)  # type: ignore[no-any-return]

    def freeze(self, cohort: int | str, name: str | None = None) -> dict[str, Any]:
        """Freeze a saved query: an immutable snapshot with ``identifier`` and ``content_hash``."""
        return self._json("POST", f"/cohorts/{cohort}/freeze", json={"name": name})  # type: ignore[no-any-return]

    def cohorts(self, frozen: bool | None = None) -> list[dict[str, Any]]:
        params = {} if frozen is None else {"frozen": str(frozen).lower()}
        return self._json("GET", "/cohorts", params=params)  # type: ignore[no-any-return]

    def cohort(self, key: int | str) -> dict[str, Any]:
        return self._json("GET", f"/cohorts/{key}")  # type: ignore[no-any-return]

    def cohort_members(self, key: int | str, node: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": 10_000}
        if node:
            params["node"] = node
        members: list[dict[str, Any]] = []
        while True:
            page = self._json("GET", f"/cohorts/{key}/members", params={**params, "offset": len(members)})
            members += page["members"]
            if not page["members"] or len(members) >= page["total"]:
                return members

    def cohort_manifest(self, key: int | str) -> list[dict[str, Any]]:
        return self._json("GET", f"/cohorts/{key}/manifest", params={"format": "json"})  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ files

    def _open(self, sha256: str, offset: int) -> tuple[int, Iterable[bytes]]:
        return self._open_url(f"/objects/{sha256}", sha256, offset)

    def _open_url(self, path: str, sha256: str, offset: int) -> tuple[int, Iterable[bytes]]:
        """Stream ``path`` from ``offset`` (a Range request, valid only while the content is ``sha256``)."""
        headers = {"Range": f"bytes={offset}-", "If-Range": f'"{sha256}"'} if offset else {}
        request = self._http.build_request("GET", path, headers=headers)
        response = self._http.send(request, stream=True)
        if response.status_code == 416:  # the partial file is already whole
            response.close()
            return offset, iter(())
        if response.status_code >= 400:
            response.read()
            response.close()
            raise _to_error(response)
        start = offset if response.status_code == 206 else 0

        def chunks() -> Iterator[bytes]:
            try:
                # As the bytes arrive (no regrouping into large chunks): what was received before a
                # kill is on disk in the .part file for the resume.
                yield from response.iter_bytes()
            finally:
                response.close()

        return start, chunks()

    def download(self, source: str | int | os.PathLike[str] | Iterable[Mapping[str, Any]], dest: str | os.PathLike[str],
                 *, workers: int = 4, progress: ProgressCallback | None = None) -> DownloadReport:
        """Download a frozen cohort (``rc-cohort-...`` or its number), a manifest file or manifest rows.

        Files land in ``dest/<case>/<study uid>/<series uid>/<sop uid>.dcm``; a rerun skips
        complete files and resumes partial ones. ``progress(entry, new_bytes)`` follows the bytes.
        """
        entries = self.entries(source)
        return download_entries(entries, dest, self._open, workers=workers, progress=progress,
                                is_fatal=_fatal)

    # ------------------------------------------------------------------ ML-ready exports (docs/EXPORT.md)

    def start_export(self, cohort: int | str, format: str, *, split: str | Mapping[str, float] = "",
                     stratify: Sequence[str] = (), seed: int = 0, bits: int = 8,
                     size: int | None = None) -> dict[str, Any]:
        """Ask the server for an ML-ready export of a cohort; returns its status (``id``, ``state``)."""
        if isinstance(split, Mapping):
            split = ",".join(f"{name}={weight}" for name, weight in split.items())
        body = {"cohort": str(cohort), "format": format, "split": split, "stratify": list(stratify),
                "seed": seed, "bits": bits, "size": size}
        return self._json("POST", "/exports", json=body)  # type: ignore[no-any-return]

    def export_status(self, export_id: str) -> dict[str, Any]:
        """``state`` (queued, running, done, failed, expired, withdrawn), ``message`` and, when done,
        ``files`` and ``failed_series`` (docs/API.md, "ML-ready exports")."""
        return self._json("GET", f"/exports/{export_id}")  # type: ignore[no-any-return]

    def delete_export(self, export_id: str) -> dict[str, Any]:
        """Delete one of your exports (its files and status) from the commons."""
        return self._json("DELETE", f"/exports/{export_id}")  # type: ignore[no-any-return]

    def wait_export(self, export_id: str, *, timeout: float = 3600.0, interval: float = 1.0) -> dict[str, Any]:
        """Poll until the export is done; a failed one raises :class:`CommonsError` with the server's message."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.export_status(export_id)
            if status["state"] == "done":
                return status
            if status["state"] == "failed":
                raise CommonsError(f"export {export_id} failed: {status['message']}", status=0, code="export_failed",
                                   hint="fix what the message says and start a new export")
            if status["state"] not in ("queued", "running"):  # expired or withdrawn: it will not be done
                raise CommonsError(f"export {export_id} is {status['state']}: {status.get('message', '')}", status=0,
                                   code=f"export_{status['state']}", hint="start a new export")
            if time.monotonic() > deadline:
                raise CommonsError(f"export {export_id} is still {status['state']} after {timeout:g} s", status=0,
                                   code="timeout", hint=f"download it later: Client.download_export({export_id!r}, DEST)")
            time.sleep(interval)

    def download_export(self, export: str | Mapping[str, Any], dest: str | os.PathLike[str], *, workers: int = 4,
                        progress: ProgressCallback | None = None) -> DownloadReport:
        """Download every file of a finished export into ``dest`` (resumable, each verified against its sha256)."""
        status = self.export_status(export) if isinstance(export, str) else export
        state = status.get("state")
        if state in ("expired", "withdrawn", "failed"):  # it will never be done
            raise CommonsError(f"export {status.get('id')} is {state}: {status.get('message', '')}", status=0,
                               code=f"export_{state}", hint="start a new export: Client.export_cohort(COHORT, DEST)")
        if state != "done":
            raise CommonsError(f"export {status.get('id')} is {state}: nothing to download yet",
                               status=0, code="not_ready", hint="wait for it: Client.wait_export(ID)")
        entries = export_entries(status)
        digests = {entry.relative: entry.object_id for entry in entries}
        base = f"/exports/{status['id']}/files/"

        def opener(relative: str, offset: int) -> tuple[int, Iterable[bytes]]:
            return self._open_url(base + quote(relative), digests[relative], offset)

        def claim(root: Path) -> None:
            claim_dest(root, export_settings(status, self.url), mark=DOWNLOAD_MARK)

        return download_entries(entries, dest, opener, workers=workers, progress=progress, is_fatal=_fatal,
                                claim=claim)

    def export_cohort(self, cohort: int | str, dest: str | os.PathLike[str], *, format: str = "dicom",
                      split: str | Mapping[str, float] = "", stratify: Sequence[str] = (), seed: int = 0,
                      bits: int = 8, size: int | None = None, wait: bool = True, timeout: float = 3600.0,
                      workers: int = 4, progress: ProgressCallback | None = None) -> dict[str, Any]:
        """An ML-ready export of ``cohort`` made by the server, downloaded to ``dest`` (docs/EXPORT.md).

        The server exports only what this user may read (never a sequestered project). With
        ``wait=False`` returns at once with the export's status (download it later with
        :meth:`download_export`); otherwise waits, downloads and returns the final status with
        ``download`` (what the download did). A rerun with the same ``dest`` skips complete files.
        """
        if wait:
            check_download_dest(dest)  # before the server works for nothing
        status = self.start_export(cohort, format, split=split, stratify=stratify, seed=seed, bits=bits, size=size)
        if not wait:
            return status
        status = self.wait_export(status["id"], timeout=timeout)
        report = self.download_export(status, dest, workers=workers, progress=progress)
        return {**status, "download": report.as_dict()}

    def entries(self, source: str | int | os.PathLike[str] | Iterable[Mapping[str, Any]]) -> list[FileEntry]:
        """The files of a cohort, a manifest file or manifest rows."""
        if isinstance(source, int) or (isinstance(source, str) and (source.startswith("rc-cohort-") or source.isdigit())):
            return entries_of(self.cohort_manifest(source))
        if isinstance(source, (str, os.PathLike)):
            return entries_of(read_manifest(source))
        return entries_of(source)


def export_settings(status: Mapping[str, Any], server: str) -> dict[str, Any]:
    """What makes two downloads of server-made exports the same export (the download's mark in DEST):
    the commons, the cohort, the format and the options; not the export's id, so the same command
    run again (a new export) resumes in the folder."""
    png, split = status.get("format") == "png", bool(status.get("split"))
    return {"server": server, "cohort": status.get("cohort"), "format": status.get("format"),
            "split": status.get("split") or "", "stratify": list(status.get("stratify") or ()),
            "seed": status.get("seed") if split else None, "bits": status.get("bits") if png else None,
            "size": status.get("size") if png else None}


def check_download_dest(dest: str | os.PathLike[str]) -> None:
    """Refuse, before an export is asked for, a DEST that holds files but no download of an export
    (:class:`UserError`): they would be overwritten or mixed with the export's."""
    check_claim(Path(dest), mark=DOWNLOAD_MARK)


def export_entries(status: Mapping[str, Any]) -> list[FileEntry]:
    """The files of a finished export (its status' ``files``: path, size, sha256) as download entries."""
    return [FileEntry(f["sha256"], int(f["size"]), relative=f["path"]) for f in status.get("files", ())]


def _fatal(error: BaseException) -> bool:
    """Errors no retry can fix: a bad token, a refusal, a missing object."""
    if isinstance(error, AuthenticationError):
        error.hint = ("get a new token (radcommons admin token create NAME, or ask your commons), then run the same "
                      "download again: complete files are skipped and partial ones resume")
        return True
    status = getattr(error, "status", 0)
    return isinstance(error, PermissionDeniedError) or 400 <= status < 500 and status not in (408, 429)


__all__ = ["Client", "DownloadReport", "FileEntry"]
