"""The PHI self-test: radcommons synth --phi, then radcommons deid per site, then score.

Every output byte and element (nested and private) is searched for the planted
markers, original UIDs and dates; what research needs must still be there. Scored in
the MIDI-B vocabulary by :mod:`radcommons.deid.selftest`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from radcommons.deid import check_deidentified
from radcommons.deid.selftest import MARKER, combine_reports, score

RADCOMMONS = str(Path(sys.executable).parent / "radcommons")


def _synth(out: Path) -> None:
    help_text = subprocess.run([RADCOMMONS, "synth", "--help"], capture_output=True, text=True).stdout
    if "--phi" not in help_text:
        pytest.skip("radcommons synth --phi is not available yet")
    run = subprocess.run(
        [RADCOMMONS, "synth", str(out), "--sites", "2", "--patients", "2", "--seed", "7", "--small", "--phi"],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr
    assert (out / "phi_manifest.json").exists()


def _deid(src: Path, dst: Path, site: str, key: Path, state: Path) -> dict:
    report = state / f"{site}.json"
    run = subprocess.run(
        [RADCOMMONS, "deid", str(src), str(dst), "--site", site, "--key-file", str(key),
         "--state-dir", str(state / site), "--report", str(report), "--workers", "2"],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(report.read_text())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("phi")
    synth = root / "synth"
    _synth(synth)
    key = root / "site.key"
    subprocess.run([RADCOMMONS, "keygen", str(key)], check=True, capture_output=True)
    sites = sorted(p.name for p in synth.iterdir() if p.is_dir())
    parts = []
    for site in sites:
        report = _deid(synth / site, root / "out" / site, site, key, root / "state")
        parts.append((site, site, report))
    return {"root": root, "synth": synth, "sites": sites, "key": key, "report": combine_reports(parts)}


@pytest.mark.slow
def test_phi_selftest_scores_100_percent(corpus):
    manifest = json.loads((corpus["synth"] / "phi_manifest.json").read_text())
    result = score(manifest, corpus["synth"], corpus["root"] / "out", corpus["report"])
    print("\n" + result.render())
    assert result.files_scored > 0
    for name, category in result.categories.items():
        assert category.failed == 0, (name, category.failures[:5])


@pytest.mark.slow
def test_every_output_byte_is_free_of_markers_and_passes_the_checker(corpus):
    manifest = json.loads((corpus["synth"] / "phi_manifest.json").read_text())
    original_uids = {uid for info in manifest["files"].values() for uid in info.get("uids", {}).values()}
    outputs = sorted((corpus["root"] / "out").rglob("*.dcm"))
    assert outputs
    for path in outputs:
        raw = path.read_bytes()
        assert not MARKER.search(raw.decode("latin-1")), path
        assert not MARKER.search(path.relative_to(corpus["root"]).as_posix())
        ds = pydicom.dcmread(path)
        for element in ds.iterall():
            if element.VR == "UI":
                assert str(element.value) not in original_uids
        assert check_deidentified(ds) == [], (path, check_deidentified(ds)[:3])


@pytest.mark.slow
def test_consistency_across_runs_sites_and_keys(corpus, tmp_path):
    site = corpus["sites"][0]
    again = _deid(corpus["synth"] / site, tmp_path / "again", site, corpus["key"], tmp_path / "state")
    first = {e["input"]: e.get("output") for e in corpus["report"]["files"] if e["input"].startswith(site + "/")}
    for entry in again["files"]:
        if entry.get("output"):
            assert first[f"{site}/{entry['input']}"] == f"{site}/{entry['output']}"
            assert (tmp_path / "again" / entry["output"]).read_bytes() == (
                corpus["root"] / "out" / site / entry["output"]
            ).read_bytes()
    other_site = _deid(corpus["synth"] / site, tmp_path / "other", "ANOTHER_SITE", corpus["key"], tmp_path / "s2")
    pseudonyms = {e["pseudonym"] for e in again["files"] if e.get("pseudonym")}
    assert pseudonyms.isdisjoint({e["pseudonym"] for e in other_site["files"] if e.get("pseudonym")})
    assert {e["new_study_uid"] for e in other_site["files"] if e.get("new_study_uid")} == {
        e["new_study_uid"] for e in again["files"] if e.get("new_study_uid")}  # same key: same UIDs
    new_key = tmp_path / "new.key"
    subprocess.run([RADCOMMONS, "keygen", str(new_key)], check=True, capture_output=True)
    rekeyed = _deid(corpus["synth"] / site, tmp_path / "rekeyed", site, new_key, tmp_path / "s3")
    assert {e["new_study_uid"] for e in rekeyed["files"] if e.get("new_study_uid")}.isdisjoint(
        {e["new_study_uid"] for e in again["files"] if e.get("new_study_uid")})
