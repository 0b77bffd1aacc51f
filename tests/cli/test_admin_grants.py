"""``radcommons admin``: a read grant names a project that exists; a contributor's may name the
project its first submission creates."""

from __future__ import annotations


def test_a_read_grant_of_a_mistyped_project_is_refused(db_url: str, run_cli) -> None:
    """``admin user grant`` (and ``user add --project``) granted a researcher a project that did not
    exist: the typo granted nothing now, and the project of that name once made later."""
    def admin(*args: str):
        return run_cli("admin", *args, "--url", db_url)

    assert run_cli("db", "upgrade", "--url", db_url).returncode == 0
    assert admin("project", "add", "Restricted-R1", "--availability", "restricted").returncode == 0
    assert admin("user", "add", "alice", "--role", "researcher").returncode == 0
    for args in (("user", "grant", "alice", "--project", "Restricetd-R1"),
                 ("user", "add", "bob", "--role", "researcher", "--project", "Restricetd-R1")):
        refused = admin(*args)
        assert refused.returncode == 2, (args, refused.stdout, refused.stderr)
        assert "no project Restricetd-R1" in refused.stderr and "projects: Restricted-R1" in refused.stderr
        assert "Traceback" not in refused.stderr
    assert "bob" not in admin("user", "list").stdout
    assert admin("user", "grant", "alice", "--project", "Restricted-R1").returncode == 0
    # A contributor is granted the project its first submission makes.
    made = admin("user", "add", "up", "--role", "contributor", "--project", "New-P1", "--site", "SITE_A")
    assert made.returncode == 0, made.stderr
    assert admin("user", "grant", "up", "--project", "New-P2").returncode == 0
    listing = admin("user", "list").stdout
    assert "Restricted-R1" in listing and "New-P1, New-P2" in listing and "Restricetd" not in listing


def test_a_user_or_grant_that_matches_nothing_is_an_error(db_url: str, run_cli) -> None:
    """``admin token list --user nobody`` printed an empty table and exited 0; revoking a project the
    user never had succeeded and the audit log recorded a revocation (records=1)."""
    def admin(*args: str):
        return run_cli("admin", *args, "--url", db_url)

    assert run_cli("db", "upgrade", "--url", db_url).returncode == 0
    assert admin("project", "add", "Restricted-R1", "--availability", "restricted").returncode == 0
    assert admin("user", "add", "alice", "--role", "researcher", "--project", "Restricted-R1").returncode == 0
    unknown = admin("token", "list", "--user", "nobody")
    assert unknown.returncode == 2 and "no user named 'nobody'" in unknown.stderr, (unknown.stdout, unknown.stderr)
    assert "tokens" not in unknown.stdout and "Traceback" not in unknown.stderr
    for args in (("user", "grant", "alice", "--project", "Restricted-R2", "--revoke"),
                 ("project", "grant", "alice", "Restricted-R2", "--revoke")):
        refused = admin(*args)
        assert refused.returncode == 2, (args, refused.stdout, refused.stderr)
        assert "user 'alice' has no grant on Restricted-R2" in refused.stderr, refused.stderr
        assert "its projects: Restricted-R1" in refused.stderr and "Traceback" not in refused.stderr
    assert admin("audit", "--action", "user.revoke", "--json").stdout == ""  # nothing was revoked
    assert admin("user", "grant", "alice", "--project", "Restricted-R1", "--revoke").returncode == 0
    revoked = admin("audit", "--action", "user.revoke", "--json").stdout
    assert '"records": 1' in revoked and "Restricted-R1" in revoked
    assert "Restricted-R1" not in admin("user", "list").stdout
