"""What ``radcommons serve`` logs never holds a secret sent in a query string.

Tokens travel in the ``Authorization`` header or the session cookie, which no log line shows;
but a client (or a person pasting a link) may put one in the URL: ``?token=rc_...``,
``?access_token=``, ``?api_key=``. The server refuses it (401), and uvicorn's access log wrote
the whole request line, token included, at the default level. :class:`RedactSecrets` is a
logging filter on every handler of uvicorn's logging configuration (:func:`log_config`): in each
record's message and arguments, the value of a query parameter whose name says it is a secret
(:data:`SECRET_NAME`) becomes ``REDACTED``, and so does anything in the token format (``rc_``
and URL-safe characters, :data:`radcommons.store.index.accounts.TOKEN_PREFIX`) wherever it
stands. The rest of the query (the explorer's facet selection, ``limit``, ``cursor``) stays.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any
from urllib.parse import unquote_plus

from radcommons.store.index.accounts import TOKEN_PREFIX

REDACTED = "REDACTED"

#: Parameter names (decoded, any case) whose values are taken for secrets.
SECRET_NAME = re.compile(r"token|key|secret|passw|pwd|auth|session|cookie|credential|signature|^sig$|^code$",
                         re.IGNORECASE)

#: A token, also with its ``_`` percent-encoded: the prefix and 16 or more URL-safe characters.
TOKEN = re.compile(re.escape(TOKEN_PREFIX[:-1]) + r"(?:_|%5[Ff])[A-Za-z0-9_%-]{16,}")

#: One ``name=value`` pair of a query string (up to ``&``, ``;``, a space, a quote or the end).
_PAIR = re.compile(r"(?P<lead>[?&;])(?P<name>[^=&;?\s\"']+)=(?P<value>[^&;\s\"']*)")


def redact(text: str) -> str:
    """``text`` with secret query values and anything in the token format replaced by ``REDACTED``."""
    if "=" in text:
        text = _PAIR.sub(_pair, text)
    return TOKEN.sub(REDACTED, text) if TOKEN_PREFIX[:-1] in text else text


def _pair(match: re.Match[str]) -> str:
    if not match.group("value") or not SECRET_NAME.search(unquote_plus(match.group("name"))):
        return match.group(0)
    return f"{match.group('lead')}{match.group('name')}={REDACTED}"


def _redacted(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class RedactSecrets(logging.Filter):
    """Rewrites a record's message and string arguments with :func:`redact` (and keeps the record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _redacted(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _redacted(value) for key, value in record.args.items()}
        return True


def log_config() -> dict[str, Any]:
    """uvicorn's logging configuration with :class:`RedactSecrets` on every handler."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_secrets"] = {"()": f"{__name__}.RedactSecrets"}
    for handler in config["handlers"].values():
        handler["filters"] = [*handler.get("filters", []), "redact_secrets"]
    return config
