"""A small in-memory commons speaking the submission API of docs/API.md (for fast tests of the uploader).

It counts every byte and request it receives, so a test can prove that a resumed upload
sent nothing twice. The end-to-end test against the real ``radcommons serve`` is in
``test_contribute_e2e.py``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class FakeCommons:
    submissions: dict[int, dict[str, Any]] = field(default_factory=dict)
    partial: dict[str, bytearray] = field(default_factory=dict)
    objects: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[int, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    clinical: dict[int, dict[str, dict[str, dict[str, Any]]]] = field(default_factory=dict)
    bytes_received: Counter = field(default_factory=Counter)  #: sha256 -> bytes received in PATCH and batch bodies
    requests: Counter = field(default_factory=Counter)  #: "METHOD kind" -> count
    batches: bool = True  #: False: a server from before files/batch (405, as FastAPI answers there)
    fail_patch_every: int = 0  #: answer 503 to every n-th PATCH or batch (retries are the client's job)
    _patches: int = 0

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.Response(status, content=json.dumps(body).encode(), headers={
            "content-type": "application/json", **(headers or {})})

    def _error(self, status: int, code: str, message: str, **extra: Any) -> httpx.Response:
        return self._json(status, {"error": {"code": code, "message": message, "hint": "", **extra}})

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/v1")
        method = request.method
        if path == "/whoami":
            self.requests["GET whoami"] += 1
            return self._json(200, {"name": "test", "role": "contributor", "site_id": None, "projects": []})
        if path == "/submissions" and method == "POST":
            self.requests["POST submissions"] += 1
            body = json.loads(request.content)
            for sub in self.submissions.values():
                if sub["project"] == body["project"] and sub["dataset"] == body["dataset"]:
                    if sub["status"] == "open":
                        return self._json(200, sub)
                    return self._error(409, "submission_closed", "committed")
            sid = len(self.submissions) + 1
            sub = {"id": sid, "project": body["project"], "dataset": body["dataset"],
                   "site_id": body.get("site_id", ""), "status": "open"}
            self.submissions[sid] = sub
            return self._json(201, sub)
        match = re.fullmatch(r"/submissions/(\d+)/(files|studies|clinical)/([^/]+)", path)
        if match:
            sid, kind, name = int(match.group(1)), match.group(2), match.group(3)
            self.requests[f"{method} {kind}"] += 1
            if self.submissions[sid]["status"] != "open" and method != "HEAD":
                return self._error(409, "submission_closed", "committed")
            if kind == "files" and name == "batch" and method == "POST":
                return self._batch(request) if self.batches else self._error(405, "method_not_allowed", path)
            if kind == "files" and name == "states" and method == "POST":
                return self._json(200, {"files": [state for digest in json.loads(request.content)["sha256"]
                                                  if (state := self._state(digest)) is not None]})
            if kind == "files":
                return self._file(method, name, request)
            if kind == "studies":
                files = json.loads(request.content)["files"]
                self.manifests.setdefault(sid, {})[name] = files
                missing = [f["sha256"] for f in files if f["sha256"] not in self.objects]
                return self._json(200, {"study_uid": name, "files": len(files), "missing": missing})
            rows = json.loads(request.content)
            staged = self.clinical.setdefault(sid, {}).setdefault(name, {})
            out = []
            for i, row in enumerate(rows, start=1):
                staged[row["submitter_id"]] = row
                out.append({"row": i, "submitter_id": row["submitter_id"], "status": "accepted", "problems": []})
            return self._json(200, {"node": name, "accepted": len(rows), "rejected": 0, "rows": out})
        match = re.fullmatch(r"/submissions/(\d+)/(commit|receipt)", path)
        if match:
            sid = int(match.group(1))
            self.requests[f"{method} {match.group(2)}"] += 1
            sub = self.submissions[sid]
            sub["status"] = "committed"
            studies = [{"study_uid": uid, "status": "accepted", "indexed": len(files), "files": []}
                       for uid, files in sorted(self.manifests.get(sid, {}).items())]
            clinical = [{"node": node, "row": i, "submitter_id": sub_id, "status": "accepted", "problems": []}
                        for node, rows in self.clinical.get(sid, {}).items() for i, sub_id in enumerate(rows, 1)]
            counts = {"studies": len(studies),
                      "instances": {"indexed": sum(s["indexed"] for s in studies)},
                      "clinical": {"accepted": len(clinical), "rejected": 0}}
            return self._json(200, {"submission_id": sid, "status": "committed", "counts": counts,
                                    "studies": studies, "clinical": clinical})
        return self._error(404, "not_found", path)

    def _state(self, digest: str) -> dict[str, Any] | None:
        if digest in self.objects:
            size = len(self.objects[digest])
            return {"sha256": digest, "offset": size, "length": size, "complete": True}
        if digest in self.partial:
            return {"sha256": digest, "offset": len(self.partial[digest]), "length": None, "complete": False}
        return None

    def _batch(self, request: httpx.Request) -> httpx.Response:
        """``files/batch``: an index line, then each file's bytes (counted as received)."""
        self._patches += 1
        if self.fail_patch_every and self._patches % self.fail_patch_every == 0:
            return self._error(503, "unavailable", "try again")
        line, _, rest = request.content.partition(b"\n")
        answers = []
        for entry in json.loads(line)["files"]:
            data, rest = rest[:entry["size"]], rest[entry["size"]:]
            self.bytes_received[entry["sha256"]] += len(data)
            self.partial.pop(entry["sha256"], None)
            if hashlib.sha256(data).hexdigest() == entry["sha256"]:
                self.objects[entry["sha256"]] = data
            answers.append(self._state(entry["sha256"]) or {"sha256": entry["sha256"], "offset": 0,
                                                            "length": entry["size"], "complete": False})
        return self._json(200, {"files": answers})

    def _file(self, method: str, digest: str, request: httpx.Request) -> httpx.Response:
        if method == "HEAD":
            state = self._state(digest)
            if state is None:
                return httpx.Response(404)
            headers = {"Upload-Offset": str(state["offset"])}
            if state["complete"]:
                headers |= {"Upload-Length": str(state["length"]), "Upload-Complete": "true"}
            return httpx.Response(200, headers=headers)
        if method == "PATCH":
            self._patches += 1
            if self.fail_patch_every and self._patches % self.fail_patch_every == 0:
                return self._error(503, "unavailable", "try again")
            offset = int(request.headers["Upload-Offset"])
            length = int(request.headers["Upload-Length"])
            held = self.partial.setdefault(digest, bytearray())
            if offset != len(held):
                return self._error(409, "offset_mismatch", "offset", expected_offset=len(held))
            held.extend(request.content)
            self.bytes_received[digest] += len(request.content)
            complete = len(held) == length
            if complete:
                data = bytes(self.partial.pop(digest))
                if hashlib.sha256(data).hexdigest() != digest:
                    return self._error(400, "hash_mismatch", "hash")
                self.objects[digest] = data
            return self._json(200, {"sha256": digest, "offset": len(held) if not complete else length,
                                    "length": length, "complete": complete})
        return self._error(405, "bad_request", method)
