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
