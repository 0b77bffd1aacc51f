"""``radcommons admin audit --action`` matches literally: ``_`` and ``%`` are characters, not LIKE wildcards."""

from __future__ import annotations


def test_action_prefix_is_literal(db_url: str, run_cli) -> None:
    assert run_cli("db", "upgrade", "--url", db_url).returncode == 0
    assert run_cli("admin", "user", "add", "ann", "--role", "curator", "--url", db_url).returncode == 0

    def events(action: str) -> list[str]:
        result = run_cli("admin", "audit", "--action", action, "--json", "--url", db_url)
        assert result.returncode == 0, result.stderr
        return [line for line in result.stdout.splitlines() if line.strip()]

    assert events("user.") and events("user.add")
    assert events("u_er.") == [] and events("%.") == [] and events("us%") == []
