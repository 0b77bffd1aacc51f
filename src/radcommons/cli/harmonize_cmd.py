"""``radcommons harmonize``: map study descriptions to LOINC codes, check tables, the review queue.

Curators work the queue of the index (``queue``), record decisions that win over the matcher
(``decide``, listed by ``decisions``), and operators extend the catalogue of codes with the
LOINC / RSNA Radiology Playbook (``catalogue import``). See docs/HARMONIZATION.md.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from radcommons.cli.context import DATABASE_HELP, opened_index
from radcommons.errors import UserError
from radcommons.harmonize.confidence import DEFAULT_THRESHOLD

if TYPE_CHECKING:
    from collections.abc import Sequence

    from radcommons.harmonize import Conflict, MappingRow, ReviewItem

app = typer.Typer(
    help="Harmonize study descriptions to LOINC / RSNA Radiology Playbook codes.\n\n"
    "Example: radcommons harmonize map --input pairs.tsv --output mapped.tsv",
    no_args_is_help=True,
)
catalogue_app = typer.Typer(
    help="The catalogue of codes: MIDRC's, extended with the LOINC / RSNA Radiology Playbook.\n\n"
    "Example: radcommons harmonize catalogue import LoincRsnaRadiologyPlaybook.csv",
    no_args_is_help=True,
)
app.add_typer(catalogue_app, name="catalogue")

_URL = typer.Option(None, "--url", help=DATABASE_HELP)
_BY = typer.Option("admin-cli", "--by", help="Who decides (recorded with the decision and in the audit log).")

OUTPUT_COLUMNS = ("loinc_code", "loinc_long_common_name", "confidence", "method")

_TABLE_OPTION = typer.Option(
    None,
    "--mapping-table",
    help="Curated mapping table (TSV/CSV: Modality, StudyDescription, LOINC code, L-Long Common Name); "
    "replaces the built-in curated pairs (default: MIDRC's table).",
)
_THRESHOLD_OPTION = typer.Option(
    DEFAULT_THRESHOLD, "--threshold", min=0.0, max=1.0, help="Answers below this confidence are left empty."
)


@app.command("map")
def map_pairs(
    input: Path = typer.Option(..., "--input", "-i", help="Pairs file with columns Modality, StudyDescription."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the pairs with their codes (TSV)."),
    mapping_table: Path | None = _TABLE_OPTION,
    threshold: float = _THRESHOLD_OPTION,
) -> None:
    """Add loinc_code, loinc_long_common_name, confidence and method to every pair.

    loinc_code is empty where no answer reaches the confidence threshold; every other
    column of the input is kept (input columns with these four names are replaced, with a warning).

    Example: radcommons harmonize map --input pairs.tsv --output mapped.tsv
    """
    from radcommons.harmonize import Matcher, load_table, read_mapping_rows, read_pairs

    pairs = read_pairs(input)
    matcher = Matcher(load_table(mapping_table), threshold=threshold)
    if mapping_table is not None:
        conflicts = _conflicts(read_mapping_rows(mapping_table))
        if conflicts:  # used anyway (MIDRC's own table has some), but never without a word
            Console(stderr=True).print(
                f"[yellow]warning:[/] {mapping_table} has {len(conflicts)} conflict(s) (a pair with two codes, "
                f"a code with two names or a code with none; radcommons harmonize check {mapping_table} lists "
                "them): where its rows disagree, the code most rows give wins, the latest row on a tie; a code's "
                "name is the code attributes' where they have it; a code with no name is answered without one",
                highlight=False)
    columns = [c for c in pairs.columns if c not in OUTPUT_COLUMNS] + list(OUTPUT_COLUMNS)
    replaced = [c for c in pairs.columns if c in OUTPUT_COLUMNS]
    if replaced:  # an earlier output mapped again, or a column of the user's own: say so either way
        Console(stderr=True).print(
            f"[yellow]warning:[/] {input} already has column(s) {', '.join(replaced)}: the output holds the "
            "matcher's values there; rename the input's column(s) to keep them", highlight=False)
    answered = 0
    try:
        from radcommons.durable import replaced_atomically

        # written whole or not at all: an earlier output stays until this one is complete
        with replaced_atomically(output, "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, delimiter="\t", lineterminator="\n")
            writer.writeheader()
            matches = matcher.match_all([(p.modality, p.description) for p in pairs.pairs])
            for record, match in zip(pairs.records, matches, strict=True):
                answered += bool(match.answer)
                writer.writerow(
                    {
                        **record,
                        "loinc_code": match.answer,
                        "loinc_long_common_name": match.long_common_name if match.answer else "",
                        "confidence": f"{match.confidence:.3f}",
                        "method": match.method,
                    }
                )
    except OSError as error:  # in the words of every command's (a temporary file beside it named the output)
        from radcommons.cli.app import os_error

        raise UserError(*os_error(error, written=output, option="--output", example="mapped.tsv")) from None
    Console(stderr=True).print(
        f"mapped {answered} of {len(pairs.pairs)} pair(s) at confidence >= {threshold}; wrote {output}",
        highlight=False,
    )


def _conflicts(rows: Sequence[MappingRow]) -> list[Conflict]:
    """The conflicts of a mapping table's rows, its codes' names compared with the code attributes'."""
    from radcommons.harmonize.tables import builtin_attributes, find_conflicts

    return find_conflicts(rows, {info.code: info for info in builtin_attributes()})


@app.command("check")
def check(
    table: Path = typer.Argument(..., help="Mapping table to check (TSV/CSV)."),
) -> None:
    """Reject a mapping table where one pair has two codes or one code two names.

    Pairs are compared after MIDRC's normalisation (case and spaces, CR/DX and PT/CT
    aliased); a code's name also with the one of MIDRC's code attributes, and a code they
    do not have needs a name. Exits 0 when consistent, 1 listing each conflict with its rows.

    Example: radcommons harmonize check StudyDescription_mapping_table.tsv
    """
    from radcommons.harmonize import read_mapping_rows

    rows = read_mapping_rows(table)
    conflicts = _conflicts(rows)
    console = Console(soft_wrap=True)
    if not conflicts:
        console.print(f"[green]ok[/]: {len(rows)} row(s), no conflicts", highlight=False)
        return
    console.print(f"[bold red]{len(conflicts)} conflict(s)[/] in {table}:", highlight=False)
    for conflict in conflicts:
        console.print("  " + conflict.describe(), highlight=False, markup=False)
    raise typer.Exit(1)


@app.command("queue")
def queue(
    input: Path | None = typer.Option(
        None, "--input", "-i",
        help="Pairs file with Modality, StudyDescription[, frequency]; default: the studies of the index "
        "that have no code and no decision.",
    ),
    mapping_table: Path | None = _TABLE_OPTION,
    threshold: float = _THRESHOLD_OPTION,
    limit: int = typer.Option(50, "--limit", "-n", min=0, help="Show at most this many items (0: all)."),
    url: str | None = _URL,
) -> None:
    """Print the review queue: pairs waiting for a curator, most studies first, with suggestions.

    Without --input, the queue of the index: every (modality, description) pair of the indexed
    studies that has no code and no curator decision (or a decision that missed some of its
    studies: deciding again codes them). Record a decision with `radcommons harmonize decide`.

    Example: radcommons harmonize queue --limit 20
    """
    if input is not None:
        from radcommons.harmonize import Matcher, load_table, read_pairs, review_queue

        pairs = read_pairs(input).pairs
        items = review_queue(pairs, Matcher(load_table(mapping_table), threshold=threshold))
        title = "review queue"
    else:
        from radcommons.store.index.harmonization import index_review_queue

        with opened_index(url) as engine, engine.connect() as conn:
            items = index_review_queue(conn, mapping_table=mapping_table, threshold=threshold)
        title = "review queue of the index"
    _print_queue(items, limit, title)


def _print_queue(items: list[ReviewItem], limit: int, title: str) -> None:
    shown = items if limit == 0 else items[:limit]
    table = Table(title=f"{title}: {len(items)} pair(s), {sum(i.studies for i in items)} studies")
    for column in ("#", "studies", "modality", "description", "suggestion", "confidence", "method"):
        table.add_column(column, overflow="fold")
    for item in shown:
        s = item.suggestion
        suggestion = f"{s.code} {s.long_common_name}" if s.code else ""
        table.add_row(
            str(item.rank), str(item.studies), item.modality, item.description, suggestion,
            f"{s.confidence:.2f}", s.method,
        )
    Console(width=200).print(table)


@app.command("decide")
def decide(
    modality: str = typer.Argument(..., help="The studies' modality (CR and DX count as one, as do CT and PT)."),
    description: str = typer.Argument(..., help="The study description as the studies carry it."),
    code: str | None = typer.Argument(None, help="The LOINC / RSNA Playbook code, e.g. 36643-5."),
    not_mappable: bool = typer.Option(False, "--not-mappable", help="No code applies to this pair."),
    name: str | None = typer.Option(
        None, "--name", help="The code's LOINC long common name, for a code not in the catalogue."
    ),
    note: str = typer.Option("", "--note", help="Why (kept with the decision and in the audit log)."),
    by: str = _BY,
    url: str | None = _URL,
) -> None:
    """Record a curator's decision for a pair; it wins over the matcher.

    The pair is compared as MIDRC compares it (case and spaces ignored, CR/DX and PT/CT one).
    The studies already indexed with the pair get the decision's code fields in the same
    transaction, and studies indexed later get them too; so do the studies of a pair the matcher
    now answers by the decision ("XR CHEST 2 VWS" for "XR CHEST 2 VIEWS"). Deciding again replaces the decision.

    Example: radcommons harmonize decide DX "XR CHEST 2 VIEWS" 36643-5 --note "2 views, not PA and lateral"
    """
    from radcommons.pipelines.indexing import index_transaction
    from radcommons.store.index.harmonization import catalogue_code, record_decision

    if not_mappable and code:
        raise UserError("give a code or --not-mappable, not both")
    if not not_mappable and not code:
        raise UserError("give the code, or --not-mappable when no code applies",
                        f"e.g. radcommons harmonize decide {modality} {description!r} 36643-5")
    if not_mappable and name:
        raise UserError("--name names a code; it makes no sense with --not-mappable")
    with opened_index(url) as engine, index_transaction(engine) as conn:
        info = None
        if code:
            info = catalogue_code(conn, code, name)
        outcome = record_decision(conn, modality=modality, description=description, code=info.code if info else "",
                                  info=info, by=by, note=note)
    decision = outcome.decision
    what = f"{decision.code} {decision.long_common_name}" if decision.code else "not mappable"
    verb = "replaced" if outcome.previous_code is not None else "recorded"
    projects = ", ".join(f"{p}: {n}" for p, n in sorted(outcome.by_project.items()))
    Console(soft_wrap=True).print(
        f"{verb}: {decision.modality} | {decision.description} -> {what}; "
        f"{outcome.studies} indexed study(ies) updated" + (f" ({projects})" if projects else ""),
        highlight=False, markup=False,
    )


@app.command("decisions")
def decisions(url: str | None = _URL) -> None:
    """List the curators' decisions, newest first.

    Example: radcommons harmonize decisions
    """
    from radcommons.store.index.harmonization import list_decisions

    with opened_index(url) as engine, engine.connect() as conn:
        rows = list_decisions(conn)
    table = Table(title=f"{len(rows)} decision(s)")
    for column in ("modality", "description", "code", "name", "by", "at", "note"):
        table.add_column(column, overflow="fold")
    for d in rows:
        table.add_row(d.modality, d.description, d.code or "(not mappable)", d.long_common_name, d.decided_by,
                      d.decided_at.isoformat(timespec="seconds"), d.note)
    Console(width=200).print(table)


@catalogue_app.command("import")
def catalogue_import(
    path: Path = typer.Argument(..., help="LoincRsnaRadiologyPlaybook.csv from a LOINC release."),
    by: str = _BY,
    url: str | None = _URL,
) -> None:
    """Add the codes of the LOINC / RSNA Radiology Playbook to the catalogue in the index.

    The Playbook comes with every LOINC release (AccessoryFiles/LoincRsnaRadiologyPlaybook/),
    downloadable from loinc.org under LOINC's licence. Imported codes can be decided on and
    are suggested in the review queue; importing again replaces them.

    Example: radcommons harmonize catalogue import Loinc_2.81/AccessoryFiles/LoincRsnaRadiologyPlaybook/LoincRsnaRadiologyPlaybook.csv
    """
    from radcommons.harmonize.catalogue import read_playbook
    from radcommons.store.index.harmonization import import_codes

    codes = read_playbook(path)
    with opened_index(url) as engine:
        added, replaced = import_codes(engine, codes, source=str(path), by=by)
    Console(soft_wrap=True).print(
        f"imported {len(codes)} code(s) from {path}: {added} new, {replaced} replaced", highlight=False, markup=False
    )
