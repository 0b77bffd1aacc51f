"""Users' roles, token lifetime and the ONE access decision (plain data shared by every layer).

* admin: everything, including users, tokens, projects and the audit trail;
* curator: every project; quarantine review; no data use agreement needed;
* contributor: submits to the projects granted to it, for its own site;
* researcher: reads open projects (and restricted ones it is granted) after accepting the
  data use agreement; never sequestered data.

:func:`readable_projects` and :func:`agreement_accepted` are the decision itself, as pure
functions of plain data: the server (``radcommons.server.access``, every read path) and the
ML export (``radcommons.pipelines.export``) read the project availabilities and the user's
grants from the index and ask these, so the rule is written once.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

from radcommons.errors import UserError

ROLES = ("admin", "curator", "contributor", "researcher")

#: Roles that act on every project (and need no data use agreement).
CURATOR_ROLES = ("admin", "curator")

#: A project's ``availability``: open to every researcher, granted per user, or held back.
OPEN, RESTRICTED, SEQUESTERED = "open", "restricted", "sequestered"
AVAILABILITIES = (OPEN, RESTRICTED, SEQUESTERED)
#: A project's name: its submitter_id in the index, in paths of exports and in URLs.
PROJECT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: A user name: shown in listings, the audit log and the explorer, so no line breaks, markup or
#: control characters (an e-mail address is fine).
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")
#: A site identifier: in the state directory's path, pseudonyms' derivation and the index.
SITE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")

#: Days an API token lives unless its creator says otherwise.
DEFAULT_TOKEN_DAYS = 30


def check_availability(availability: str) -> str:
    """``availability`` as stored (lower case), or a :class:`UserError` naming the choices:
    a value the access rule does not know must never reach the index."""
    value = availability.strip().lower()
    if value not in AVAILABILITIES:
        raise UserError(f"unknown availability {availability!r}", f"choose one of: {', '.join(AVAILABILITIES)}")
    return value


def _named(pattern: re.Pattern[str], value: str, refusal: str, hint: str) -> str:
    if not pattern.fullmatch(value):
        raise UserError(refusal, hint)
    return value


def check_project_name(name: str) -> str:
    """``name`` if it can name a project, else a :class:`UserError` saying what can."""
    return _named(PROJECT_NAME, name, f"{name!r} cannot name a project",
                  "use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit (e.g. Open-A1)")


def check_user_name(name: str) -> str:
    """``name`` without surrounding spaces if it can name a user, else a :class:`UserError`."""
    return _named(USER_NAME, name.strip(), f"{name!r} cannot name a user",
                  "use 1 to 64 letters, digits, '.', '_', '-', '+' or '@', starting with a letter or digit "
                  "(e.g. site-a-uploader, or an e-mail address)")


def check_site_id(site: str) -> str:
    """``site`` without surrounding spaces if it can identify a site, else a :class:`UserError`."""
    return _named(SITE_ID, site.strip(), f"invalid site identifier {site!r}",
                  "use 1 to 64 letters, digits, - or _, starting with a letter or digit (e.g. SITE_A)")


def withheld(availability: str | None) -> bool:
    """Whether a project of this availability is held back from everyone but curators:
    sequestered, or anything else that is neither open nor restricted (fail closed)."""
    return availability not in (OPEN, RESTRICTED)


def readable_projects(role: str, grants: Collection[str], availability: Mapping[str, str | None]) -> set[str] | None:
    """The projects a user of ``role`` with project ``grants`` may read; ``None`` means every project.

    ``availability`` maps each project of the index to its availability. Admins and curators
    read everything; researchers read ``open`` projects plus the ``restricted`` ones granted to
    them; contributors the same, plus the non-sequestered projects they submit to (granted); a
    ``sequestered`` project is read by nobody else, whatever the grants. A project without a
    record holds nothing to read.
    """
    if role in CURATOR_ROLES:
        return None
    readable = set()
    for name, state in availability.items():
        if withheld(state):
            continue
        if state == OPEN or (name in grants and role in ("researcher", "contributor")):
            readable.add(name)
    return readable


def agreement_accepted(role: str, accepted_versions: Collection[str], current_version: str) -> bool:
    """Curators and admins need no data use agreement; everyone else must have accepted the current one."""
    return role in CURATOR_ROLES or current_version in accepted_versions
