"""Server-made exports and their download (``radcommons download --format``) when things go wrong.

Found by a robustness sweep of the researcher's "find and take a cohort" journey; each test
says what the researcher saw before. A real server (``radcommons serve``) over a commons of its
own (the tests change availabilities and accounts), the command line as a subprocess.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "research"))

from research_support import ResearchCommons, build  # noqa: E402

import radcommons  # noqa: E402

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def commons(deid_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ResearchCommons]:
    root = tmp_path_factory.mktemp("export-robustness")
    built = build(root, f"sqlite:///{root / 'index.db'}", deid_tree)
    try:
        yield built
    finally:
        built.server.stop()


@pytest.fixture(scope="module")
def cohort(commons: ResearchCommons) -> str:
    """The researcher's frozen cohort of every case it may read (the open project)."""
    with _client(commons) as client:
        return str(client.save_cohort("open cases", "case", None, freeze=True)["identifier"])


def _client(commons: ResearchCommons, user: str = "researcher") -> radcommons.Client:
    return radcommons.Client(commons.url, commons.server.tokens[user])


def _download(run_cli: Cli, commons: ResearchCommons, dest: Path, cohort: str, *options: str,
              user: str = "researcher") -> subprocess.CompletedProcess[str]:
    """``radcommons download DEST --cohort ID OPTIONS``, waiting while another export of the user runs."""
    token = commons.token_file(user, dest.parent / f"{user}.token")
    deadline = time.monotonic() + 120
    while True:
        done = run_cli("download", str(dest), "--cohort", cohort, *options, "--server", commons.url,
                       "--token-file", str(token))
        if "is still running" not in done.stdout + done.stderr or time.monotonic() > deadline:
            return done
        time.sleep(0.5)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_download_format_never_touches_a_folder_of_other_files(run_cli: Cli, commons: ResearchCommons,
                                                                cohort: str, tmp_path: Path) -> None:
    """Before: the export's README.md and labels.csv replaced the user's own, with exit 0."""
    dest = tmp_path / "myproject"
    dest.mkdir()
    (dest / "README.md").write_text("my own project notes - precious\n")
    (dest / "labels.csv").write_text("id,mylabel\n")
    before = _files(dest)
    done = _download(run_cli, commons, dest, cohort, "--format", "png")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "not empty and holds no RadCommons export" in done.stderr and "new or empty folder" in done.stderr
    assert "Traceback" not in done.stderr
    assert _files(dest) == before


def test_download_format_never_mixes_two_exports(run_cli: Cli, commons: ResearchCommons, cohort: str,
                                                 tmp_path: Path) -> None:
    """Before: a nifti export downloaded into the folder of a png one left 67 PNGs beside the
    volumes, under a label table and README of the nifti export only, with exit 0."""
    dest = tmp_path / "srv-png"
    first = _download(run_cli, commons, dest, cohort, "--format", "png")
    assert first.returncode == 0, first.stdout + first.stderr
    before = _files(dest)
    assert any(name.endswith(".png") for name in before)
    other = _download(run_cli, commons, dest, cohort, "--format", "nifti")
    assert other.returncode == 2, other.stdout + other.stderr
    assert "holds an export made with other settings (bits, format)" in other.stderr
    assert _files(dest) == before
    again = _download(run_cli, commons, dest, cohort, "--format", "png")  # the same export: resumed
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 downloaded" in again.stdout and _files(dest) == before
