"""``radcommons harmonize``: map study descriptions to LOINC codes, check tables, list the review queue."""

from __future__ import annotations

import csv
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from radcommons.errors import UserError
from radcommons.harmonize import (
    DEFAULT_THRESHOLD,
    Matcher,
    find_conflicts,
    load_table,
    read_mapping_rows,
    read_pairs,
    review_queue,
)

app = typer.Typer(
    help="Harmonize study descriptions to LOINC / RSNA Radiology Playbook codes.\n\n"
    "Example: radcommons harmonize map --input pairs.tsv --output mapped.tsv",
    no_args_is_help=True,
)

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
    column of the input is kept.

    Example: radcommons harmonize map --input pairs.tsv --output mapped.tsv
    """
    pairs = read_pairs(input)
    matcher = Matcher(load_table(mapping_table), threshold=threshold)
    columns = [c for c in pairs.columns if c not in OUTPUT_COLUMNS] + list(OUTPUT_COLUMNS)
    answered = 0
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with output.open("w", encoding="utf-8", newline="") as handle:
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
    except OSError as error:
        raise UserError(f"{output}: cannot write ({error.strerror})") from None
    Console(stderr=True).print(
        f"mapped {answered} of {len(pairs.pairs)} pair(s) at confidence >= {threshold}; wrote {output}",
        highlight=False,
    )


@app.command("check")
def check(
    table: Path = typer.Argument(..., help="Mapping table to check (TSV/CSV)."),
) -> None:
    """Reject a mapping table where one pair has two codes or one code two names.

    Pairs are compared after MIDRC's normalisation (case and spaces, CR/DX and PT/CT
    aliased). Exits 0 when consistent, 1 listing each conflict with its rows.

    Example: radcommons harmonize check StudyDescription_mapping_table.tsv
    """
    rows = read_mapping_rows(table)
    conflicts = find_conflicts(rows)
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
    input: Path = typer.Option(..., "--input", "-i", help="Pairs file with Modality, StudyDescription[, frequency]."),
    mapping_table: Path | None = _TABLE_OPTION,
    threshold: float = _THRESHOLD_OPTION,
    limit: int = typer.Option(50, "--limit", "-n", min=0, help="Show at most this many items (0: all)."),
) -> None:
    """Print the review queue: pairs below the threshold, most studies first, with suggestions.

    Example: radcommons harmonize queue --input pairs.tsv --limit 20
    """
    pairs = read_pairs(input)
    items = review_queue(pairs.pairs, Matcher(load_table(mapping_table), threshold=threshold))
    shown = items if limit == 0 else items[:limit]
    table = Table(title=f"review queue: {len(items)} pair(s), {sum(i.studies for i in items)} studies")
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
