"""Users, project grants, bearer tokens and the audit log, over the system tables.

Tokens are ``rc_`` + 43 URL-safe random characters (256 bits). Only their SHA-256 is stored,
so the database (or a backup of it) yields no usable token; the token itself is shown once,
when it is made. Plain data in, plain data out; no HTTP here.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from radcommons.errors import UserError
from radcommons.roles import DEFAULT_TOKEN_DAYS, ROLES, check_project_name, check_site_id, check_user_name
from radcommons.store.index.schema import node_tables, system_table

TOKEN_PREFIX = "rc_"
#: ``last_used_at`` is refreshed at most this often, so reads do not all become writes.
LAST_USED_RESOLUTION = _dt.timedelta(seconds=60)
#: The code of :class:`AuthenticationFailed` for a token of a disabled account.
DISABLED_CODE = "account_disabled"


class AuthenticationFailed(UserError):
    """A token that does not authenticate.

    ``code`` is invalid_token | token_expired | token_revoked | account_disabled.
    """

    def __init__(self, message: str, hint: str, code: str) -> None:
        super().__init__(message, hint)
        self.code = code


@dataclass(frozen=True)
class User:
    """A user and the projects granted to it."""

    id: int
    name: str
    role: str
    site_id: str | None
    projects: tuple[str, ...] = ()
    created_at: _dt.datetime | None = None
    #: When an administrator disabled the account (None: enabled); its tokens then fail at once.
    disabled_at: _dt.datetime | None = None

    @property
    def state(self) -> str:
        return "disabled" if self.disabled_at is not None else "enabled"


@dataclass(frozen=True)
class TokenInfo:
    """A token as listed (never the secret)."""

    id: int
    user: str
    label: str | None
    created_at: _dt.datetime | None
    expires_at: _dt.datetime
    revoked_at: _dt.datetime | None
    last_used_at: _dt.datetime | None

    @property
    def state(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at <= utcnow() else "active"


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the token's user, its role, site and project grants."""

    user_id: int
    name: str
    role: str
    site_id: str | None
    projects: frozenset[str] = field(default_factory=frozenset)
    token_id: int | None = None
    token_expires_at: _dt.datetime | None = None
    #: Versions of the data use agreement the user accepted (``store.index.dua``).
    dua_versions: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_curator(self) -> bool:
        """Curators and admins act on every project."""
        return self.role in ("admin", "curator")

    def may_submit_to(self, project: str) -> bool:
        return self.is_curator or (self.role == "contributor" and project in self.projects)


def utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def as_utc(value: _dt.datetime | None) -> _dt.datetime | None:
    """SQLite hands back naive datetimes; everything here is stored in UTC."""
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=_dt.timezone.utc)


def hash_token(token: str) -> str:
    """The stored form of a token: lowercase hex SHA-256 of its text."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}", f"choose one of: {', '.join(ROLES)}")
    return role


def _user_row(conn: Connection, name: str) -> Any:
    table = system_table("user")
    row = conn.execute(select(table).where(table.c.name == name)).first()
    if row is None:
        raise UserError(f"no user named {name!r}", "list them with: radcommons admin user list")
    return row


def _projects(conn: Connection, user_id: int) -> tuple[str, ...]:
    grants = system_table("user_project")
    return tuple(sorted(conn.execute(select(grants.c.project_id).where(grants.c.user_id == user_id)).scalars()))


def add_user(engine: Engine, name: str, role: str, *, site_id: str | None = None,
             projects: Sequence[str] = ()) -> User:
    """Create a user with ``role`` (and project grants); :class:`UserError` if the name is taken."""
    _check_role(role)
    name = check_user_name(name)
    if role == "contributor" and not projects:
        raise UserError(f"contributor {name!r} needs at least one project to submit to",
                        "add --project PROJECT (repeat it for several)")
    site_id = check_site_id(site_id) if site_id else None
    projects = [check_project_name(project.strip()) for project in projects if project.strip()]
    if role == "contributor" and not site_id:
        # Without a site a contributor could submit as any site, and claim another site's indexed files.
        raise UserError(f"contributor {name!r} needs the site it submits for",
                        "add --site SITE (e.g. --site SITE_A): a contributor may submit only for its own site")
    users = system_table("user")
    try:
        with engine.begin() as conn:
            user_id = conn.execute(
                insert(users).values(name=name, role=role, site_id=site_id or None, created_at=utcnow())
                .returning(users.c.id)
            ).scalar_one()
            _require_grantable(conn, role, projects)
            _grant(conn, user_id, projects)
            record_audit(conn, actor="admin-cli", action="user.add", target=name, records=1,
                         detail={"role": role, "site_id": site_id, "projects": list(projects)})
    except IntegrityError:
        raise UserError(f"a user named {name!r} already exists",
                        "choose another name, or grant projects with: radcommons admin user grant") from None
    return get_user(engine, name)


def _grant(conn: Connection, user_id: int, projects: Iterable[str]) -> None:
    grants = system_table("user_project")
    have = set(_projects(conn, user_id))
    for project in dict.fromkeys(p.strip() for p in projects if p.strip()):
        if project not in have:
            conn.execute(insert(grants).values(user_id=user_id, project_id=project, created_at=utcnow()))


def require_projects(conn: Connection, projects: Iterable[str]) -> None:
    """A :class:`UserError` naming the ``projects`` that do not exist, with the ones that do and how
    to create one: a name given where a project must already be (a typo must not grant, or
    create, anything)."""
    table = node_tables()["project"]
    known = set(conn.execute(select(table.c.submitter_id)).scalars())
    missing = sorted(set(projects) - known)
    if missing:
        raise UserError(f"no project {', '.join(missing)}",
                        f"projects: {', '.join(sorted(known)[:20]) or 'none'}; create one with: "
                        f"radcommons admin project add {missing[0]} --availability restricted")


def _require_grantable(conn: Connection, role: str, projects: Iterable[str], existing: bool = False) -> None:
    """A :class:`UserError` for a grant of a project that does not exist, unless it is a contributor's
    (without ``existing``): a contributor's first submission may create the project it was granted,
    a read grant on a mistyped name would take effect if a project of that name were made later."""
    if existing or role != "contributor":
        require_projects(conn, projects)


def _require_held(conn: Connection, row: Any, projects: Iterable[str]) -> None:
    """A :class:`UserError` naming the ``projects`` the user ``row`` holds no grant on: revoking one
    succeeded and was audited as a revocation, so a mistyped name looked like access taken away."""
    held = _projects(conn, row.id)
    missing = [project for project in projects if project not in held]
    if missing:
        raise UserError(f"user {row.name!r} has no grant on {', '.join(missing)}",
                        f"its projects: {', '.join(held) or 'none'} (see: radcommons admin user list)")


def grant_projects(engine: Engine, name: str, projects: Sequence[str], *, revoke: bool = False,
                   existing: bool = False) -> User:
    """Grant (or with ``revoke`` take away) projects from a user. A grant names projects that
    exist (a read grant on a mistyped name grants nothing, and would take effect if a project of
    that name were created later), except a contributor's without ``existing``: it may name a
    project its first submission creates."""
    projects = list(dict.fromkeys(project.strip() for project in projects if project.strip()))
    if not revoke:
        projects = [check_project_name(project) for project in projects]
    grants = system_table("user_project")
    with engine.begin() as conn:
        row = _user_row(conn, name)
        if not revoke:
            _require_grantable(conn, row.role, projects, existing)
        if revoke:
            _require_held(conn, row, projects)
            conn.execute(delete(grants).where(grants.c.user_id == row.id, grants.c.project_id.in_(projects)))
        else:
            _grant(conn, row.id, projects)
        record_audit(conn, actor="admin-cli", action="user.revoke" if revoke else "user.grant", target=name,
                     records=len(projects), detail={"projects": list(projects)})
    return get_user(engine, name)


def _as_user(conn: Connection, row: Any) -> User:
    return User(row.id, row.name, row.role, row.site_id, _projects(conn, row.id), as_utc(row.created_at),
                as_utc(row.disabled_at))


def get_user(engine: Engine, name: str) -> User:
    with engine.connect() as conn:
        return _as_user(conn, _user_row(conn, name))


def list_users(engine: Engine) -> list[User]:
    users = system_table("user")
    with engine.connect() as conn:
        rows = conn.execute(select(users).order_by(users.c.name)).all()
        return [_as_user(conn, r) for r in rows]


def set_disabled(engine: Engine, name: str, disabled: bool) -> User:
    """Disable (or enable again) the account ``name``; its tokens fail or work again at once.

    Disabling keeps the account, its grants, tokens and cohorts: enabling restores them as they were.
    Doing it twice is harmless (the first ``disabled_at`` stays).
    """
    users = system_table("user")
    with engine.begin() as conn:
        row = _user_row(conn, name)
        if (row.disabled_at is not None) != disabled:
            conn.execute(update(users).where(users.c.id == row.id).values(disabled_at=utcnow() if disabled else None))
            record_audit(conn, actor="admin-cli", action="user.disable" if disabled else "user.enable", target=name,
                         records=1)
    return get_user(engine, name)


#: The longest life a token may be given (ten years).
MAX_TOKEN_DAYS = 3650


def create_token(engine: Engine, user: str, *, expires_days: float = DEFAULT_TOKEN_DAYS,
                 label: str | None = None) -> tuple[str, TokenInfo]:
    """Make a token for ``user``; returns (the token, shown only now; its listing)."""
    if not 0 < expires_days <= MAX_TOKEN_DAYS:  # also NaN, which compares false to everything
        raise UserError(f"--expires-days must be more than 0 and at most {MAX_TOKEN_DAYS} (got {expires_days})",
                        "e.g. --expires-days 30: a token that never expires is one nobody remembers to revoke")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    tokens = system_table("token")
    now = utcnow()
    expires = now + _dt.timedelta(days=expires_days)
    with engine.begin() as conn:
        row = _user_row(conn, user)
        token_id = conn.execute(
            insert(tokens).values(user_id=row.id, token_hash=hash_token(token), label=label,
                                  created_at=now, expires_at=expires).returning(tokens.c.id)
        ).scalar_one()
        record_audit(conn, actor="admin-cli", action="token.create", target=f"token {token_id} of {user}",
                     records=1, detail={"expires_at": expires.isoformat()})
    return token, TokenInfo(token_id, user, label, now, expires, None, None)


def revoke_token(engine: Engine, token_id: int) -> TokenInfo:
    """Revoke a token by its id (as listed); revoking twice is harmless."""
    tokens = system_table("token")
    with engine.begin() as conn:
        row = None if not 0 < token_id < 2**63 else conn.execute(  # PostgreSQL: "bigint out of range"
            select(tokens.c.id, tokens.c.revoked_at).where(tokens.c.id == token_id)).first()
        if row is None:
            raise UserError(f"no token with id {token_id}", "list them with: radcommons admin token list")
        if row.revoked_at is None:
            conn.execute(update(tokens).where(tokens.c.id == token_id).values(revoked_at=utcnow()))
            record_audit(conn, actor="admin-cli", action="token.revoke", target=f"token {token_id}", records=1)
    return next(t for t in list_tokens(engine) if t.id == token_id)


def list_tokens(engine: Engine, user: str | None = None) -> list[TokenInfo]:
    tokens, users = system_table("token"), system_table("user")
    query = (select(tokens, users.c.name).join(users, users.c.id == tokens.c.user_id).order_by(tokens.c.id))
    if user is not None:
        query = query.where(users.c.name == user)
    with engine.connect() as conn:
        if user is not None:
            _user_row(conn, user)  # an unknown (mistyped) name is an error, not an empty list
        return [
            TokenInfo(r.id, r.name, r.label, as_utc(r.created_at), as_utc(r.expires_at),  # type: ignore[arg-type]
                      as_utc(r.revoked_at), as_utc(r.last_used_at))
            for r in conn.execute(query)
        ]


def authenticate(engine: Engine, token: str) -> Principal:
    """The principal of a bearer token, or :class:`AuthenticationFailed` saying why not."""
    tokens, users = system_table("token"), system_table("user")
    digest = hash_token(token.strip())
    with engine.connect() as conn:
        row = conn.execute(
            select(tokens.c.id, tokens.c.expires_at, tokens.c.revoked_at, tokens.c.last_used_at,
                   users.c.id.label("user_id"), users.c.name, users.c.role, users.c.site_id, users.c.disabled_at)
            .join(users, users.c.id == tokens.c.user_id).where(tokens.c.token_hash == digest)
        ).first()
        if row is None:
            raise AuthenticationFailed("the token is not known to this commons",
                                       "check the token file; ask an administrator for a token: "
                                       "radcommons admin token create NAME", "invalid_token")
        if row.disabled_at is not None:
            # First: whatever the token's state, the account is what the person must act on.
            raise AuthenticationFailed(f"the account {row.name!r} is disabled",
                                       "contact an administrator of this commons to have it enabled again",
                                       DISABLED_CODE)
        now = utcnow()
        if row.revoked_at is not None:
            raise AuthenticationFailed(f"the token was revoked at {as_utc(row.revoked_at).isoformat()}",  # type: ignore[union-attr]
                                       "ask an administrator for a new token", "token_revoked")
        expires = as_utc(row.expires_at)
        assert expires is not None
        if expires <= now:
            raise AuthenticationFailed(f"the token expired at {expires.isoformat()}",
                                       "ask an administrator for a new token: radcommons admin token create NAME",
                                       "token_expired")
        projects = frozenset(_projects(conn, row.user_id))
        accepted = frozenset(conn.execute(select(system_table("dua_acceptance").c.version).where(
            system_table("dua_acceptance").c.user_id == row.user_id)).scalars())
    last = as_utc(row.last_used_at)
    if last is None or now - last > LAST_USED_RESOLUTION:
        with engine.begin() as conn:
            conn.execute(update(tokens).where(tokens.c.id == row.id).values(last_used_at=now))
    return Principal(row.user_id, row.name, row.role, row.site_id, projects, row.id, expires, accepted)


def record_audit(conn: Connection, *, actor: str | None, action: str, target: str | None = None,
                 project: str | None = None, client: str | None = None, records: int | None = None,
                 success: bool = True, detail: dict[str, Any] | None = None) -> None:
    """Append one event to the audit log, in the caller's transaction (never a token in it)."""
    record_audits(conn, actor=actor, action=action, target=target, project=project, client=client,
                  records=records, success=success, details=[detail])


def record_audits(conn: Connection, *, actor: str | None, action: str, details: Sequence[dict[str, Any] | None],
                  target: str | None = None, project: str | None = None, client: str | None = None,
                  records: int | None = 1, success: bool = True) -> None:
    """:func:`record_audit` for one event per item of ``details`` (one statement for all of them).

    A ``target`` longer than its column (a URL path, a file path, a harmonization pair) is cut to
    fit and kept whole in each event's detail as ``target``: PostgreSQL refused the whole event
    (and with it the decision, or the 401 of a refused token, which became a 500)."""
    if not details:
        return
    table = system_table("audit_event")
    room = table.c.target.type.length
    if target is not None and len(target) > room:
        details = [{**(detail or {}), "target": target} for detail in details]
        target = target[:room - 1] + "…"
    at = utcnow()
    conn.execute(insert(table), [
        {"at": at, "actor": actor, "action": action, "target": target, "project_id": project, "client": client,
         "records": records, "success": success, "detail": detail} for detail in details])


def audit_events(engine: Engine, limit: int = 100) -> list[dict[str, Any]]:
    """The newest audit events, newest first, as plain dictionaries."""
    table = system_table("audit_event")
    with engine.connect() as conn:
        rows = conn.execute(select(table).order_by(table.c.id.desc()).limit(limit)).mappings().all()
    return [dict(row) for row in rows]
