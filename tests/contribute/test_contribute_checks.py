"""What ``radcommons contribute`` checks before it de-identifies or sends, through the real command and a
real ``radcommons serve``: the token's grants (--project, --site), a source with nothing to send, and
the modes of the state directory's private folders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from contribute_support import radiograph_study

sys.path.insert(0, str(Path(__file__).parents[1] / "server"))

from commons_fixtures import PROJECT, SITE, Commons, sqlite_commons  # noqa: E402,F401  (the fixture)


@pytest.fixture
def token_file(sqlite_commons: Commons, tmp_path: Path) -> Path:
    path = tmp_path / "upload.token"
    path.write_text(sqlite_commons.tokens["uploader"] + "\n")
    path.chmod(0o600)
    return path


def contribute(src: Path, state: Path, key_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "radcommons", "contribute", str(src), "--key-file", str(key_file),
                           "--state-dir", str(state), "--workers", "1", *args],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "250"},
                          preexec_fn=lambda: os.umask(0o022))


def _submissions(commons: Commons) -> list:
    with commons.http("uploader") as http:
        answer = http.get("/submissions")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return body if isinstance(body, list) else body.get("submissions", body.get("items", []))


@pytest.mark.parametrize(("project", "site", "said"), [
    ("Not-Granted", SITE, "may not submit to project 'Not-Granted'"),
    (PROJECT, "SITE_B", "submits for site SITE_A, not SITE_B"),
])
def test_a_project_or_site_the_token_may_not_send_to_is_refused_before_any_work(
        sqlite_commons: Commons, token_file: Path, corpus: Path, key_file: Path, tmp_path: Path,
        project: str, site: str, said: str) -> None:
    """Found only after the whole source had been de-identified (hours on a real export), and with a
    wrong --site the pseudonyms of another site's namespace were written to the registry."""
    state = tmp_path / "state"
    for dry_run in ((), ("--dry-run",)):  # a dry run checks too when it is given a commons
        done = contribute(corpus / "site_a", state, key_file, "--site", site, "--project", project,
                          "--server", sqlite_commons.url, "--token-file", str(token_file), *dry_run)
        assert done.returncode == 2, done.stdout + done.stderr
        assert said in " ".join(done.stderr.split()) and "Traceback" not in done.stderr, done.stderr
        assert not list(state.rglob("*.dcm")) and not list(state.rglob("deid-*.json"))
        assert not (state / "registry.sqlite").exists()


def test_a_dry_run_without_a_commons_only_warns(corpus: Path, key_file: Path, tmp_path: Path) -> None:
    from serve_support import free_port

    token = tmp_path / "t.token"
    token.write_text("rc_whatever\n")
    token.chmod(0o600)
    # one radiograph study: what is checked comes before the de-identification, which needs no more
    done = contribute(radiograph_study(corpus), tmp_path / "state", key_file, "--site", SITE, "--project", PROJECT,
                      "--server", f"http://127.0.0.1:{free_port()}", "--token-file", str(token), "--dry-run",
                      "--clinical", str(corpus / "site_a" / "clinical"))
    assert "--project and --site not checked" in " ".join(done.stderr.split()), done.stderr
    assert "dry run" in done.stdout, done.stdout + done.stderr


def test_a_source_without_dicom_sends_nothing_and_fails(sqlite_commons: Commons, token_file: Path, key_file: Path,
                                                       tmp_path: Path) -> None:
    """An empty folder (a mistyped path, an export not yet written) or one of other files committed an
    empty submission and exited 0."""
    empty, other = tmp_path / "empty", tmp_path / "other"
    empty.mkdir()
    (other / "sub").mkdir(parents=True)
    (other / "sub" / "readme.txt").write_text("not dicom\n")
    before = len(_submissions(sqlite_commons))
    for src, rejected in ((empty, 0), (other, 1)):
        done = contribute(src, tmp_path / f"state-{src.name}", key_file, "--site", SITE, "--project", PROJECT,
                          "--server", sqlite_commons.url, "--token-file", str(token_file))
        assert done.returncode == 1, done.stdout + done.stderr
        said = " ".join(done.stdout.split())
        assert "no DICOM file to send" in said and f"({rejected} file(s) rejected" in said, said
        assert "nothing was sent" in said and "submission" not in said, said
    assert len(_submissions(sqlite_commons)) == before  # no empty submission was made


def test_the_state_folders_are_made_private(sqlite_commons: Commons, token_file: Path, corpus: Path,
                                            key_file: Path, tmp_path: Path) -> None:
    """The documented 0700 did not apply: the de-identification made STATE/staging, and with it
    STATE, with the umask's mode (0755) before the state directory was made private."""
    state = tmp_path / "state"
    # one radiograph study: any de-identification makes staging/, and a study of images that need no
    # OCR makes it in a second
    done = contribute(radiograph_study(corpus), state, key_file, "--site", SITE, "--project", PROJECT,
                      "--clinical", str(corpus / "site_a" / "clinical"), "--dry-run")
    assert "dry run" in done.stdout, done.stdout + done.stderr
    for folder in (state, state / "staging", state / "reports", state / "receipts"):
        assert oct(folder.stat().st_mode & 0o777) == oct(0o700), folder


def test_a_dry_run_given_a_commons_writes_nothing_there(sqlite_commons: Commons, token_file: Path, corpus: Path,
                                                        key_file: Path, tmp_path: Path) -> None:
    """It asks who the token is (to check --project and --site) and nothing else: no submission,
    no upload, no audit event."""
    from radcommons.store.index import make_engine
    from radcommons.store.index.accounts import audit_events

    engine = make_engine(sqlite_commons.db_url)
    try:
        before, submissions = audit_events(engine, limit=100_000), _submissions(sqlite_commons)
        done = contribute(radiograph_study(corpus), tmp_path / "state", key_file, "--site", SITE, "--project",
                          PROJECT, "--server", sqlite_commons.url, "--token-file", str(token_file), "--dry-run",
                          "--clinical", str(corpus / "site_a" / "clinical"))
        assert "nothing was sent" in done.stdout and "Traceback" not in done.stderr, done.stdout + done.stderr
        assert audit_events(engine, limit=100_000) == before
    finally:
        engine.dispose()
    assert _submissions(sqlite_commons) == submissions
