"""Key and token files: read as people save them (a byte order mark), refused with the file named,
and a warning when other users of the machine can read them (as ssh warns of a private key)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import radcommons
from radcommons.client.commons import CommonsClient, read_token_file
from radcommons.client.errors import TokenFileError
from radcommons.errors import AdviceWarning, UserError


def test_token_files(tmp_path: Path) -> None:
    token = tmp_path / "commons.token"
    token.write_bytes(b"\xef\xbb\xbfrc_abc123\r\n")  # "text that is not UTF-8 ('ascii' codec ...)", no file named
    token.chmod(0o600)
    assert read_token_file(token) == "rc_abc123"
    token.chmod(0o644)
    with pytest.warns(AdviceWarning, match=f"{token} can be read by other users .* chmod 600"):
        read_token_file(token)
    token.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(TokenFileError, match=f"token file {token} is not text"):
        read_token_file(token)
    token.write_text("rc_abc 123\n")
    with pytest.raises(TokenFileError, match="holds characters no token has"):
        read_token_file(token)


def test_key_files_on_the_command_line(run_cli, tmp_path: Path) -> None:
    assert run_cli("keygen", "site.key").returncode == 0
    (tmp_path / "src").mkdir()
    os.chmod(tmp_path / "site.key", 0o644)
    result = run_cli("deid", "src", "out", "--site", "S", "--key-file", "site.key")
    assert "warning: the key file site.key can be read by other users" in " ".join(result.stderr.split())
    (tmp_path / "short.key").write_text("abcd\n")
    short = run_cli("deid", "src", "out", "--site", "S", "--key-file", "short.key")
    assert short.returncode == 2 and "key file short.key:" in short.stderr, short.stderr  # the file was not named


def test_a_commons_url_with_a_password_is_refused_without_showing_it() -> None:
    """Basic auth replaced the bearer token, and connection errors echoed the password."""
    for client, url in ((radcommons.Client, "http://alice:s3cret@127.0.0.1:9"),
                        (CommonsClient, "https://alice:s3cret@commons.example.org")):
        with pytest.raises(UserError, match="holds a user name or password") as refused:
            client(url, "rc_token")
        assert "s3cret" not in str(refused.value)
