"""``radcommons synth``: write a realistic synthetic multi-site export."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table


def synth(
    out: Path = typer.Argument(..., help="Output folder (new or empty; --force replaces an earlier synth output)."),
    sites: int = typer.Option(3, "--sites", help="Number of contributing sites (1-26)."),
    patients: int = typer.Option(10, "--patients", help="Patients per site."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1, help="Random seed: the same seed gives byte-identical files."),
    small: bool = typer.Option(False, "--small", help="Small matrices (256 px radiographs, 64x64 CT, 8 slices) for fast tests."),
    defects: bool = typer.Option(False, "--defects", help="Also plant real-export defects; see defects_manifest.json."),
    phi: bool = typer.Option(False, "--phi", help="Mark every identifier with PHIMARK-nnnnnn; see phi_manifest.json."),
    force: bool = typer.Option(False, "--force", help="Replace an earlier synth output in OUT."),
) -> None:
    """Generate synthetic chest CR/DX/CT/US studies, clinical files and manifests, per site.

    Example: radcommons synth var/synth --sites 3 --patients 5 --seed 1 --small --phi
    """
    from radcommons.synth.generate import generate

    started = time.perf_counter()
    manifest = generate(out, sites, patients, seed, small=small, defects=defects, phi=phi, force=force)
    elapsed = time.perf_counter() - started
    table = Table(title=f"radcommons synth -> {out} (seed {seed}, {elapsed:.1f} s)")
    for column in ("site", "institution", "patients", "studies", "series", "instances", "modalities", "clinical"):
        table.add_column(column)
    for site in manifest.sites:
        table.add_row(
            site.folder, site.institution, str(site.patients), str(site.studies), str(site.series),
            str(site.instances), ", ".join(f"{k} {v}" for k, v in sorted(site.modalities.items())),
            site.clinical_format,
        )
    table.add_row("total", "", str(manifest.patients), str(manifest.studies), str(manifest.series),
                  str(manifest.instances), "", "", style="bold")
    console = Console()
    console.print(table)
    extras = ["synth_manifest.json"] + (["phi_manifest.json"] if phi else []) + (["defects_manifest.json"] if defects else [])
    console.print(f"wrote {', '.join(extras)} in {out}", highlight=False)
