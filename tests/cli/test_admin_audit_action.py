"""``radcommons admin audit --action`` matches literally: ``_`` and ``%`` are characters, not LIKE wildcards."""

from __future__ import annotations

from radcommons.store.index import make_engine
from radcommons.store.index.accounts import add_user


def test_action_prefix_is_literal(migrated_url: str, run_cli) -> None:
    # The event searched for, written as `admin user add` writes it (add_user). That command and
    # `db upgrade` through a process are checked on both databases by tests/cli/test_admin_grants.py:
    # here only the search goes through the command line, one process per pattern.
    engine = make_engine(migrated_url)
    try:
        add_user(engine, "ann", "curator")
    finally:
        engine.dispose()

    def events(action: str) -> list[str]:
        result = run_cli("admin", "audit", "--action", action, "--json", "--url", migrated_url)
        assert result.returncode == 0, result.stderr
        return [line for line in result.stdout.splitlines() if line.strip()]

    assert events("user.") and events("user.add")
    assert events("u_er.") == [] and events("%.") == [] and events("us%") == []
