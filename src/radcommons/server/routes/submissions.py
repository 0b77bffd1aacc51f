"""Submissions: create, read, declare studies, send clinical records, commit, receipt, history."""

from __future__ import annotations

import unicodedata
from typing import Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator

from radcommons.dicom.uid import UID_MAX_LENGTH, UID_PATTERN
from radcommons.inputs import MAX_FILE_SIZE
from radcommons.pipelines import submission as pipeline
from radcommons.roles import PROJECT_NAME, SITE_ID
from radcommons.server.auth import current_principal
from radcommons.server.context import ServerContext, client_address, get_context
from radcommons.server.routes.params import RowId
from radcommons.store.index.accounts import Principal

router = APIRouter(tags=["submissions"])


_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
#: Unicode categories a path in a package may not hold: controls (C0, DEL and C1), format
#: characters (bidirectional overrides, zero-width ones) and line and paragraph separators.
_UNSEEN = frozenset({"Cc", "Cf", "Zl", "Zp"})


class SubmissionCreate(BaseModel):
    project: str = Field(min_length=1, max_length=64, pattern=f"^{PROJECT_NAME.pattern}$",
                         description="Project submitter_id, e.g. Open-A1")
    dataset: str = Field(min_length=1, max_length=128, pattern=_ID,
                         description="Batch submitter_id, e.g. SITE_A_20260301")
    site_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=f"^{SITE_ID.pattern}$",
                                description="The contributing site (default: the user's)")


class ManifestEntry(BaseModel):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="lowercase hex SHA-256 of the file")
    size: int = Field(ge=0, le=MAX_FILE_SIZE)
    path_in_package: str = Field(min_length=1, max_length=1024,
                                 description="the file's relative path in the study package")

    @field_validator("path_in_package")
    @classmethod
    def _plain_relative_path(cls, value: str) -> str:
        """Shown to curators and in receipts, kept with quarantined files: never a path that leaves
        its package or carries control characters."""
        parts = value.split("/")
        if value.startswith("/") or "\\" in value or any(part in ("", ".", "..") for part in parts):
            raise ValueError("must be a relative path with '/' between names, without '..', '.' or empty names "
                             "(no '/' at its start or end, nor two in a row)")
        unseen = sorted({c for c in value if unicodedata.category(c) in _UNSEEN})
        if unseen:
            # C1 controls (U+009B starts a terminal escape) and bidirectional overrides (U+202E
            # shows a name backwards) passed where C0 controls were refused.
            raise ValueError("must not carry control, format or line-separator characters: "
                             + ", ".join(f"U+{ord(c):04X}" for c in unseen))
        return value


class StudyManifest(BaseModel):
    files: list[ManifestEntry] = Field(description="Every instance of the study")
    base_version: int | None = Field(
        default=None, ge=0, le=2**31 - 1,
        description="The study version the manifest was built on (0: the commons had none of the study): "
                    "the commit versions the study only if it is still the latest (else the study's "
                    "receipt status is changed_since_read). Left out: no such check")


@router.post("/submissions", status_code=201, summary="Create a submission (or return the open one)")
def create_submission(body: SubmissionCreate, request: Request,
                      principal: Principal = Depends(current_principal),
                      context: ServerContext = Depends(get_context)) -> JSONResponse:
    view, created = pipeline.create_submission(context.engine, principal, project=body.project,
                                               dataset=body.dataset, site_id=body.site_id,
                                               client=client_address(request))
    return JSONResponse(view, status_code=201 if created else 200)


@router.get("/submissions", summary="Submissions the user may see, newest first")
def list_submissions(project: str | None = Query(default=None), principal: Principal = Depends(current_principal),
                     context: ServerContext = Depends(get_context)) -> list[dict[str, Any]]:
    return pipeline.list_submissions(context.engine, principal, project)


@router.get("/submissions/{submission_id}", summary="One submission")
def get_submission(submission_id: RowId, principal: Principal = Depends(current_principal),
                   context: ServerContext = Depends(get_context)) -> dict[str, Any]:
    return pipeline.get_submission(context.engine, principal, submission_id)


@router.put("/submissions/{submission_id}/studies/{study_uid}", summary="Declare a study's instances")
def put_study(submission_id: RowId, body: StudyManifest, request: Request,
              study_uid: str = Path(max_length=UID_MAX_LENGTH, pattern=UID_PATTERN),
              principal: Principal = Depends(current_principal),
              context: ServerContext = Depends(get_context)) -> dict[str, Any]:
    files = [pipeline.ManifestFile(f.sha256, f.size, f.path_in_package) for f in body.files]
    return pipeline.put_manifest(context.engine, context.store, principal, submission_id, study_uid, files,
                                 client=client_address(request), base_version=body.base_version)


@router.post("/submissions/{submission_id}/clinical/{node}", summary="Send clinical records of one node type")
def post_clinical(submission_id: RowId, node: str, request: Request,
                  records: list[Any] = Body(description="records in the data dictionary's form"),
                  first_row: int = Query(default=1, ge=0, description="number of the first row (for messages)"),
                  principal: Principal = Depends(current_principal),
                  context: ServerContext = Depends(get_context)) -> dict[str, Any]:
    return pipeline.post_clinical(context.engine, principal, submission_id, node, records, first_row,
                                  client=client_address(request))


@router.post("/submissions/{submission_id}/commit", summary="Verify, index or quarantine, and get the receipt")
def commit(submission_id: RowId, request: Request, principal: Principal = Depends(current_principal),
           context: ServerContext = Depends(get_context)) -> dict[str, Any]:
    receipt = pipeline.commit(context.engine, context.store, principal, submission_id,
                              client=client_address(request))
    context.spool.discard(submission_id)
    return receipt


@router.post("/submissions/{submission_id}/abandon", summary="End an open submission that will not be committed")
def abandon(submission_id: RowId, request: Request, principal: Principal = Depends(current_principal),
            context: ServerContext = Depends(get_context)) -> dict[str, Any]:
    view = pipeline.abandon(context.engine, principal, submission_id, client=client_address(request))
    context.spool.discard(submission_id)  # after the state changed: a request still writing one then finds it closed
    return view


@router.get("/submissions/{submission_id}/receipt", summary="The receipt of a committed submission")
def receipt(submission_id: RowId, principal: Principal = Depends(current_principal),
            context: ServerContext = Depends(get_context)) -> dict[str, Any]:
    return pipeline.get_receipt(context.engine, principal, submission_id)


@router.get("/studies/{study_uid}/versions", summary="A study's history, oldest first")
def versions(project: str = Query(), study_uid: str = Path(max_length=UID_MAX_LENGTH, pattern=UID_PATTERN),
             principal: Principal = Depends(current_principal),
             context: ServerContext = Depends(get_context)) -> list[dict[str, Any]]:
    return pipeline.study_versions(context.engine, principal, project, study_uid)
