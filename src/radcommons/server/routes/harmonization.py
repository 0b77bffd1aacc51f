"""The curators' harmonization queue over HTTP: pending pairs, decisions, deciding (docs/HARMONIZATION.md).

The same store functions as ``radcommons harmonize queue / decide / decisions``
(:mod:`radcommons.store.index.harmonization`): a decision is recorded with
:func:`~radcommons.store.index.harmonization.record_decision` in the index's write transaction,
re-harmonizes the studies already indexed with the pair (and with the pairs the matcher now
answers by it) and is audited
(``harmonization.decide``, ``harmonization.restudy``), the decider being the token's user.
Curators and admins only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field, field_validator, model_validator

from radcommons.errors import UserError
from radcommons.harmonize import ReviewItem
from radcommons.harmonize.study_codes import decision_description, decision_key, require_decision_key
from radcommons.pipelines.indexing import index_transaction
from radcommons.server.auth import current_principal
from radcommons.server.context import ServerContext, client_address, get_context
from radcommons.server.errors import ApiError
from radcommons.store.index.accounts import Principal
from radcommons.store.index.harmonization import (
    StoredDecision,
    catalogue_code,
    index_review_queue,
    list_decisions,
    record_decision,
)

router = APIRouter(tags=["harmonization"])

T = TypeVar("T")
#: The most items one page of the queue or of the decisions holds.
MAX_PAGE = 1000


def require_curator(principal: Principal = Depends(current_principal)) -> Principal:
    """Curators and admins only (403 otherwise)."""
    if not principal.is_curator:
        raise ApiError(403, "forbidden",
                       f"{principal.name!r} ({principal.role}) may not do this: curators and admins only",
                       "ask a commons administrator for a curator account")
    return principal


class DecisionBody(BaseModel):
    """A curator's decision for one (modality, study description) pair."""

    modality: str = Field(max_length=64, description="the studies' modality (CR and DX count as one, as do CT and PT)",
                          examples=["DX"])
    description: str = Field(max_length=1024, description="the study description as the studies carry it",
                             examples=["XR CHEST 2 VIEWS"])
    code: str | None = Field(default=None, max_length=32, description="the LOINC / RSNA Playbook code",
                             examples=["36643-5"])
    not_mappable: bool = Field(default=False, description="no code applies to this pair (give no code)")
    name: str | None = Field(default=None, max_length=256,
                             description="the code's LOINC long common name, for a code not in the catalogue")
    note: str = Field(default="", max_length=4000, description="why (kept with the decision and in the audit log)")

    @field_validator("modality", "description", "code", "name", "note", mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # No study carries one, and PostgreSQL cannot store it (a 500 there, stored on SQLite).
        if isinstance(value, str) and "\0" in value:
            raise ValueError("the value holds a NUL character (\\u0000): remove it")
        return value

    @field_validator("description")
    @classmethod
    def _description(cls, value: str) -> str:
        try:  # the store's own check (empty, or longer than the index keeps), as 422 naming the field
            decision_description(value)
        except UserError as error:
            raise ValueError(f"{error.message}: {error.hint}") from None
        return value

    @field_validator("modality")
    @classmethod
    def _modality(cls, value: str) -> str:
        if decision_key(value, "X") is None:
            raise ValueError("give exactly one modality, e.g. DX (CR and DX count as one, as do CT and PT)")
        try:  # one DICOM modality ('CR\\DX', a multi-valued Modality, is none): the store's check, as 422
            require_decision_key(value, "X")
        except UserError as error:
            raise ValueError(error.message) from None
        return value

    @model_validator(mode="after")
    def _code_or_not_mappable(self) -> DecisionBody:
        if self.not_mappable and self.code:
            raise ValueError("give a code or not_mappable: true, not both")
        if not self.not_mappable and not (self.code or "").strip():
            raise ValueError("give the code (e.g. 36643-5), or not_mappable: true when no code applies")
        if self.not_mappable and self.name:
            raise ValueError("name names a code; leave it out with not_mappable: true")
        return self


def _decision(d: StoredDecision) -> dict[str, Any]:
    return {"modality": d.modality, "description": d.description, "code": d.code or None,
            "long_common_name": d.long_common_name or None, "not_mappable": not d.code,
            "method": d.method or None, "system": d.system or None, "contrast": d.contrast or None,
            "decided_by": d.decided_by, "decided_at": d.decided_at.isoformat(), "note": d.note}


def _item(item: ReviewItem) -> dict[str, Any]:
    s = item.suggestion
    suggestion = {"code": s.code, "long_common_name": s.long_common_name, "confidence": round(s.confidence, 3),
                  "method": s.method, "rule": s.rule} if s.code else None
    return {"rank": item.rank, "modality": item.modality, "description": item.description, "studies": item.studies,
            "suggestion": suggestion}


def _page(name: str, rows: Sequence[T], shape: Callable[[T], dict[str, Any]], limit: int, offset: int
          ) -> dict[str, Any]:
    return {"total": len(rows), "offset": offset, "limit": limit, name: [shape(r) for r in rows[offset:offset + limit]]}


_OFFSET = Query(default=0, ge=0, description="skip this many (the next page: offset + limit)")


@router.get("/harmonization/queue", summary="Pairs of indexed studies with no code and no decision, busiest first")
def queue(limit: int = Query(default=50, ge=1, le=MAX_PAGE), offset: int = _OFFSET,
          principal: Principal = Depends(require_curator),
          context: ServerContext = Depends(get_context)) -> dict[str, Any]:
    with context.engine.connect() as conn:
        items = index_review_queue(conn)
    return {**_page("items", items, _item, limit, offset), "studies": sum(i.studies for i in items)}


@router.get("/harmonization/decisions", summary="The curators' decisions, newest first")
def decisions(limit: int = Query(default=MAX_PAGE, ge=1, le=MAX_PAGE), offset: int = _OFFSET,
              principal: Principal = Depends(require_curator),
              context: ServerContext = Depends(get_context)) -> dict[str, Any]:
    with context.engine.connect() as conn:
        return _page("decisions", list_decisions(conn), _decision, limit, offset)


@router.post("/harmonization/decisions", summary="Record (or replace) a decision; re-harmonizes the indexed studies")
def decide(body: DecisionBody, request: Request, principal: Principal = Depends(require_curator),
           context: ServerContext = Depends(get_context)) -> dict[str, Any]:
    with index_transaction(context.engine) as conn:
        info = None
        if body.code:
            try:
                info = catalogue_code(conn, body.code, body.name)
            except UserError as error:
                raise ApiError(422, "validation_error", error.message,
                               "give a code of the catalogue (e.g. 36643-5); for a code not in it, its LOINC long "
                               "common name in \"name\", or have an operator import the LOINC / RSNA Playbook "
                               "(radcommons harmonize catalogue import)",
                               fields=[{"field": "body.code", "message": error.message}]) from None
        outcome = record_decision(conn, modality=body.modality, description=body.description,
                                  code=info.code if info else "", info=info, by=principal.name, note=body.note,
                                  client=client_address(request))
    return {"decision": _decision(outcome.decision), "replaced": outcome.previous_code is not None,
            "previous_code": outcome.previous_code or None, "studies": outcome.studies,
            "by_project": outcome.by_project}
