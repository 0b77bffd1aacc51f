"""``radcommons admin audit --action`` matches literally: ``_`` and ``%`` are characters, not LIKE wildcards."""

from __future__ import annotations

from radcommons.store.index import make_engine
from radcommons.store.index.accounts import add_user


def test_action_prefix_is_literal(migrated_url: str, run_cli) -> None:
    # The event searched for, written as `admin user add` writes it (add_user). That command and
    # `db upgrade` through a process are checked on both databases by tests/cli/test_admin_grants.py:
    # here only the search goes through the command line, one process per pattern.
    _add_ann(migrated_url)

    def events(action: str) -> list[str]:
        result = run_cli("admin", "audit", "--action", action, "--json", "--url", migrated_url)
        assert result.returncode == 0, result.stderr
        return [line for line in result.stdout.splitlines() if line.strip()]

    assert events("user.") and events("user.add")
    assert events("u_er.") == [] and events("%.") == [] and events("us%") == []


def test_a_search_that_finds_nothing_says_so_with_its_filters(migrated_url: str, run_cli) -> None:
    """An empty table (exit 0) read as 'nobody did anything'; a mistyped --user looked the same."""
    _add_ann(migrated_url)
    found = run_cli("admin", "audit", "--url", migrated_url)
    assert found.returncode == 0 and "user.add" in found.stdout, found.stdout + found.stderr
    nothing = run_cli("admin", "audit", "--user", "nobody", "--action", "research.", "--url", migrated_url)
    assert nothing.returncode == 0, nothing.stderr
    assert "no audit events match --user nobody, --action research." in nothing.stdout
    assert "admin user list" in nothing.stdout and "actor" not in nothing.stdout.splitlines()[0]


def _add_ann(url: str) -> None:
    """User ann added as `admin user add` adds her (add_user): one user.add event."""
    engine = make_engine(url)
    try:
        add_user(engine, "ann", "curator")
    finally:
        engine.dispose()
