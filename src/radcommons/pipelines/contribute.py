"""The site side of a contribution: de-identify, convert, check, package, send, receipt.

:func:`prepare` does everything that stays at the site (steps 1-3):

1. de-identify every file under the source into ``<state dir>/staging`` with the deid
   engine (its registry and key; the report of every file, withheld and rejected ones
   with their reasons);
2. convert the site's clinical files into data dictionary records
   (:func:`radcommons.clinical.convert_clinical`), naming each patient with the pseudonym
   the images got and counting days from each case's index event (for a case the commons
   already holds, the day 0 recorded when it was committed: :mod:`.case_days`);
3. validate everything and check cross-references; write the readable report (Markdown
   and JSON) into ``<state dir>/reports``.

:func:`send` does the rest (steps 4-5) through
:func:`radcommons.pipelines.contribute_upload.deliver` and writes the receipt into
``<state dir>/receipts``, and records the day 0 of each case the commons committed.
Reports and receipts name original files and identifiers: they
stay in the state directory, which nothing uploaded is taken from except the staging
folder's de-identified files.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radcommons.client import AuthenticationError, CommonsClient, ServerError
from radcommons.clinical import (
    ERROR,
    Conversion,
    Day0,
    SiteMapping,
    SourceTable,
    convert_clinical,
    read_tables,
)
from radcommons.deid import (
    REJECTED,
    WITHHELD,
    DeidContext,
    RunReport,
    deidentify_tree,
    key_fingerprint,
    report_stamp,
)
from radcommons.durable import write_atomic
from radcommons.errors import UserError
from radcommons.pipelines import case_days
from radcommons.pipelines.contribute_package import StagedFile, imaging_studies, packages, stage
from radcommons.pipelines.contribute_upload import (
    BytesCallback,
    Delivery,
    FileCallback,
    StudyPackage,
    UploadJournal,
    deliver,
    target_key,
)

STAGING = "staging"
REPORTS = "reports"
RECEIPTS = "receipts"


@dataclass(frozen=True)
class ContributeRequest:
    """What to contribute, and with which key and state (the CLI's arguments, checked)."""

    src: Path
    clinical: tuple[Path, ...]
    site: str
    project: str
    context: DeidContext
    state_dir: Path
    mapping: SiteMapping
    dataset: str
    workers: int = 0

    @property
    def staging(self) -> Path:
        return self.state_dir / STAGING


@dataclass
class ContributionPlan:
    """Everything prepared at the site, and exactly what would leave it."""

    request: ContributeRequest
    deid: RunReport
    staged: list[StagedFile]
    conversion: Conversion
    packages: list[StudyPackage]  #: the studies to send
    held_back: dict[str, str]  #: study UID -> why it is not sent
    report_markdown: Path | None = None
    report_json: Path | None = None

    @property
    def errors(self) -> list[Any]:
        return list(self.conversion.errors)

    @property
    def clinical(self) -> dict[str, list[dict[str, Any]]]:
        """The records to send, per node type (parents first)."""
        return self.conversion.by_node()

    def leaving(self) -> dict[str, Any]:
        """Counts of what would leave the site."""
        return {
            "studies": len(self.packages),
            "files": sum(len(p.files) for p in self.packages),
            "bytes": sum(p.size for p in self.packages),
            "clinical": self.conversion.counts(),
        }


def default_dataset(site: str, today: _dt.date | None = None) -> str:
    """The submission batch name, MIDRC style: ``SITE_20260301``."""
    return f"{site}_{(today or _dt.date.today()):%Y%m%d}"


def dataset_to_send(state_dir: Path, server: str, project: str, site: str, requested: str | None) -> str:
    """The dataset this run sends: the one of a submission an earlier run left open (killed before its commit),
    which the upload resumes, else ``requested``, else :func:`default_dataset`.

    The clinical records name the dataset their submission carries; taken from the date when a run killed
    yesterday was resumed today, or from a ``--dataset`` other than the open submission's, they named
    another than the one the upload resumed, and the commons refused every case while it took the studies.
    """
    with UploadJournal(state_dir) as journal:
        remembered = journal.dataset_for(target_key(server, project, site))
    if remembered is None:
        return requested or default_dataset(site)
    if requested and requested != remembered[0]:
        raise UserError(
            f"an earlier run left the submission of dataset {remembered[0]} to {server} open (stopped before its "
            f"commit); this run, with --dataset {requested}, would resume it",
            f"finish it first: run the same command with --dataset {remembered[0]} (or without --dataset); "
            f"then send {requested}",
        )
    return remembered[0]


def prepare(
    request: ContributeRequest,
    *,
    deid_progress: Callable[[int, int], None] | None = None,
) -> ContributionPlan:
    """Steps 1-3: de-identify, convert, validate and cross-check; write the report."""
    if not request.src.exists():
        raise UserError(f"the source {request.src} does not exist", "give the folder exported from the PACS")
    tables: list[SourceTable] = read_tables(request.clinical)  # fail early on an unreadable file
    stamp = report_stamp()
    cores = os.cpu_count() or 1
    deid = deidentify_tree(
        request.src, request.staging, request.context, state_dir=request.state_dir,
        workers=min(request.workers or cores, cores),  # a process more than cores only costs its start-up
        report_path=request.state_dir / REPORTS / f"deid-{stamp}.json", progress=deid_progress,
        exclude=request.clinical,
    )
    staged = stage(request.staging, deid.outcomes)
    conversion = convert_clinical(
        tables, key=request.context.key, site=request.site, project=request.project,
        studies=imaging_studies(staged), mapping=request.mapping, dataset=request.dataset,
        day0=case_days.known(request.state_dir, request.site, request.project),
    )
    sendable = {r.submitter_id for r in conversion.records if r.node == "imaging_study"}
    held_back: dict[str, str] = {}
    chosen: list[StudyPackage] = []
    for package in packages(staged):
        if package.study_uid in sendable:
            chosen.append(package)
        else:
            held_back[package.study_uid] = _held_reason(package.study_uid, staged, conversion)
    plan = ContributionPlan(request, deid, staged, conversion, chosen, held_back)
    plan.report_markdown, plan.report_json = write_report(plan, request.state_dir / REPORTS, stamp)
    return plan


def _held_reason(study_uid: str, staged: Sequence[StagedFile], conversion: Conversion) -> str:
    patients = {s.patient_id for s in staged if s.study_uid == study_uid}
    if len(patients) > 1:
        return "its images belong to more than one patient"
    cases = {r.patient_id for r in conversion.records if r.node == "case"}
    if not patients & cases:
        return "the patient has no valid case record (see the clinical issues)"
    return "its imaging_study record was rejected (see the clinical issues)"


def send(
    plan: ContributionPlan,
    client: CommonsClient,
    *,
    server: str,
    allow_partial: bool = False,
    workers: int = 4,
    on_file: FileCallback | None = None,
    on_bytes: BytesCallback | None = None,
) -> tuple[Delivery, Path]:
    """Steps 4-5: upload what the plan allows and write the receipt; returns it and its path."""
    if plan.errors and not allow_partial:
        raise UserError(
            f"{len(plan.errors)} error(s) in the data: nothing was sent",
            f"fix them (see {plan.report_markdown}) or send only the valid parts with --allow-partial",
        )
    request = plan.request
    with UploadJournal(request.state_dir) as journal:
        try:
            delivery = deliver(
                client, journal, target=target_key(server, request.project, request.site),
                project=request.project, site=request.site, dataset=request.dataset,
                packages=plan.packages, clinical=plan.clinical, workers=workers, on_file=on_file, on_bytes=on_bytes,
            )
        except (AuthenticationError, ServerError) as error:
            # A token expired or revoked during a long upload, a commons whose disk filled: once it is
            # seen to, the same command goes on. Said, so that nobody starts the upload over.
            again = "run the same command again: it resumes where it stopped (nothing the commons confirmed is sent again)"
            hint = error.hint.rstrip(". ")
            raise type(error)(error.message, f"{hint}; then {again}" if hint else f"once it is seen to, {again}",
                              status=error.status, code=error.code, detail=error.detail) from error
    path = write_receipt(plan, delivery, request.state_dir / RECEIPTS)
    if delivery.receipt.status == "committed":
        case_days.record(request.state_dir, request.site, request.project, committed_day0(plan, delivery),
                         dataset=delivery.submission.dataset, submission_id=delivery.submission.id)
    return delivery, path


def committed_day0(plan: ContributionPlan, delivery: Delivery) -> dict[str, tuple[str, Day0]]:
    """MRN -> (case submitter_id, day 0) of each case whose record the commons accepted in ``delivery``."""
    accepted = {r.get("submitter_id") for r in delivery.receipt.clinical
                if r.get("node") == "case" and r.get("status") == "accepted"}
    cases = {r.patient_id: r.submitter_id for r in plan.conversion.records if r.node == "case"}
    return {mrn: (cases[mrn], day0) for mrn, day0 in plan.conversion.day0.items()
            if mrn in cases and cases[mrn] in accepted}


def day0_rows(conversion: Conversion) -> list[dict[str, Any]]:
    """Each sent case's day 0 for the site's report (private: MRNs and real dates)."""
    cases = {r.patient_id: r.submitter_id for r in conversion.records if r.node == "case"}
    return [{"patient_id": mrn, "case": cases.get(mrn), "index_event": day0.label, "date": day0.date.isoformat(),
             "recorded_by": day0.recorded or None} for mrn, day0 in sorted(conversion.day0.items())]


# --------------------------------------------------------------------------- reports


def _private_write(path: Path, text: str) -> Path:
    """Write atomically, readable by the owner only (reports name original identifiers)."""
    write_atomic(path, text, private=True)
    return path


def report_data(plan: ContributionPlan) -> dict[str, Any]:
    """The report as JSON-ready data."""
    request = plan.request
    conversion = plan.conversion
    return {
        "format": "radcommons.contribute.report/1",
        "site": request.site,
        "project": request.project,
        "dataset": request.dataset,
        "source": str(request.src),
        "clinical_files": [str(p) for p in request.clinical],
        "mapping": list(request.mapping.sources),
        "key_fingerprint": key_fingerprint(request.context.key),
        "deid_report": str(plan.deid.path) if plan.deid.path else None,
        "deid": {
            "counts": plan.deid.counts(),
            "not_sent": [o.to_json() for o in plan.deid.outcomes if o.status in (WITHHELD, REJECTED)],
        },
        "clinical": {
            "rows_read": conversion.rows_read,
            "records": conversion.counts(),
            "rejected_records": len(conversion.rejected),
            "errors": len(conversion.errors),
            "issues": [i.to_dict() for i in conversion.issues],
            "values": conversion.value_maps(),
            "day0": day0_rows(conversion),
        },
        "studies": {
            "to_send": [{"study_uid": p.study_uid, "files": len(p.files), "bytes": p.size} for p in plan.packages],
            "held_back": [{"study_uid": uid, "reason": why} for uid, why in sorted(plan.held_back.items())],
        },
        "leaving": plan.leaving(),
    }


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(data: dict[str, Any]) -> str:
    """The report for people: what was done, what is wrong (file, row, field, fix), what leaves."""
    lines = [
        f"# Contribution report: {data['site']} -> {data['project']} ({data['dataset']})",
        "",
        "Private to the site: this report names original files, MRNs and dates. Never send it.",
        "",
        f"* source: `{data['source']}`",
        f"* clinical files: {', '.join(f'`{p}`' for p in data['clinical_files']) or 'none'}",
        f"* mapping: {', '.join(data['mapping'])}",
        f"* key fingerprint: `{data['key_fingerprint']}`",
        "",
        "## De-identification",
        "",
        "| outcome | files |",
        "|---|---:|",
    ]
    counts = data["deid"]["counts"]
    for name in ("deidentified", "withheld", "rejected", "total"):
        lines.append(f"| {name} | {counts.get(name, 0)} |")
    not_sent = data["deid"]["not_sent"]
    if not_sent:
        lines += ["", "Files not sent:", "", "| file | outcome | reason |", "|---|---|---|"]
        lines += [f"| {_cell(o['input'])} | {o['outcome']} | {_cell(o.get('reason'))} |" for o in not_sent]
    clinical = data["clinical"]
    lines += ["", "## Clinical data", "", f"{clinical['rows_read']} rows in the clinical files (those of tables not "
              "read or ignored included); records converted and valid:", "",
              "| node | records |", "|---|---:|"]
    lines += [f"| {node} | {n} |" for node, n in clinical["records"].items()]
    if clinical["values"]:
        lines += ["", "### Values as read and as sent", "",
                  "The commons gets the data dictionary's value; the value as your files hold it stays here.", "",
                  "| field | in your files | sent as | rows |", "|---|---|---|---:|"]
        lines += [f"| {v['field']} | {_cell(v['as_read'])} | {_cell(v['sent_as'])} | {v['rows']} |"
                  for v in clinical["values"]]
    recorded = sum(1 for d in clinical.get("day0", []) if d["recorded_by"])
    if recorded:
        lines += ["", f"{recorded} case(s) the commons holds already: counted from the day 0 recorded when they were "
                  "first committed (an earlier study gets negative days), so that all of a case's data is counted "
                  "from one day."]
    issues = clinical["issues"]
    errors = [i for i in issues if i["severity"] == ERROR]
    lines += ["", f"### Issues ({len(errors)} error(s), {len(issues) - len(errors)} other)", ""]
    if issues:
        lines += ["| severity | file | row | field | value | problem | fix |", "|---|---|---:|---|---|---|---|"]
        for i in issues:
            allowed = f" (allowed: {', '.join(i['allowed'])})" if i.get("allowed") else ""
            lines.append(
                f"| {i['severity']} | {_cell(i['file'])} | {_cell(i['row'])} | {_cell(i['column'])} | "
                f"{_cell(i['value'])} | {_cell(i['message'])}{_cell(allowed)} | {_cell(i['fix'])} |"
            )
    else:
        lines.append("None.")
    studies = data["studies"]
    lines += ["", "## Studies", "", f"{len(studies['to_send'])} to send, {len(studies['held_back'])} held back.", ""]
    if studies["held_back"]:
        lines += ["| study (de-identified UID) | why it is held back |", "|---|---|"]
        lines += [f"| {s['study_uid']} | {_cell(s['reason'])} |" for s in studies["held_back"]]
    leaving = data["leaving"]
    lines += ["", "## What leaves the site", "",
              f"* {leaving['studies']} studies, {leaving['files']} files, {leaving['bytes']:,} bytes (de-identified)",
              "* clinical records: " + (", ".join(f"{n} {node}" for node, n in leaving["clinical"].items()) or "none"),
              ""]
    return "\n".join(lines)


def write_report(plan: ContributionPlan, folder: Path, stamp: str) -> tuple[Path, Path]:
    """``contribute-<stamp>.md`` and ``.json`` in ``folder`` (the state directory's reports)."""
    data = report_data(plan)
    json_path = _private_write(folder / f"contribute-{stamp}.json", json.dumps(data, indent=1, default=str) + "\n")
    md_path = _private_write(folder / f"contribute-{stamp}.md", render_markdown(data))
    return md_path, json_path


def receipt_rows(plan: ContributionPlan, delivery: Delivery) -> list[dict[str, Any]]:
    """Each clinical row of the receipt with the site file and row it came from."""
    origins = {(r.node, r.submitter_id): r.origin for r in plan.conversion.records}
    rows = []
    for entry in delivery.receipt.clinical:
        origin = origins.get((entry.get("node"), entry.get("submitter_id")))
        rows.append({**entry, "site_file": origin.file if origin else None, "site_row": origin.row if origin else None})
    return rows


def write_receipt(plan: ContributionPlan, delivery: Delivery, folder: Path) -> Path:
    """The server's receipt, with this run's upload statistics and site rows, in ``folder``."""
    receipt = delivery.receipt.data
    counts = receipt.get("counts") or {}
    # The submission as this run opened it (open, no files yet) contradicted the receipt beside it:
    # its state and counts are now the receipt's, as the commons committed it.
    submission = {name: value for name, value in delivery.submission.__dict__.items() if name != "created"}
    submission.update(status=receipt.get("status", submission["status"]), committed_at=receipt.get("committed_at"),
                      files=sum((counts.get("instances") or {}).values()), studies=counts.get("studies", 0),
                      clinical_records=sum((counts.get("clinical") or {}).values()))
    data = {
        "format": "radcommons.contribute.receipt/1",
        "submission": submission,
        "upload": delivery.stats.to_json(),
        "receipt": receipt,
        "clinical_rows": receipt_rows(plan, delivery),
        "day0": day0_rows(plan.conversion),
        "report": str(plan.report_markdown) if plan.report_markdown else None,
    }
    name = f"receipt-{delivery.submission.dataset}-{delivery.submission.id}.json"
    return _private_write(folder / name, json.dumps(data, indent=1, default=str) + "\n")


def study_statuses(delivery: Delivery) -> Counter[str]:
    return Counter(str(s.get("status")) for s in delivery.receipt.studies)


@dataclass(frozen=True)
class Sample:
    """A few converted records per node type, for the dry run's display."""

    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def sample(plan: ContributionPlan, per_node: int = 2) -> Sample:
    return Sample({node: rows[:per_node] for node, rows in plan.clinical.items()})
