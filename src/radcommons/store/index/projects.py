"""Project records and their availability (open | restricted | sequestered), for administrators.

``radcommons ingest --availability`` sets it for a project it creates; these functions create a
project ahead of any data, list projects, and change availability (recorded in the audit log).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, insert, select, update

from radcommons.roles import check_availability, check_project_name
from radcommons.store.index.accounts import record_audit
from radcommons.store.index.schema import node_tables



def list_projects(engine: Engine) -> list[dict[str, Any]]:
    """Every project: submitter_id, name, availability, program and its number of cases."""
    tables = node_tables()
    project, case = tables["project"], tables["case"]
    cases = select(case.c.project_id, func.count().label("n")).group_by(case.c.project_id).subquery()
    statement = (select(project.c.submitter_id, project.c.name, project.c.availability,
                        func.coalesce(cases.c.n, 0).label("cases"))
                 .select_from(project.outerjoin(cases, cases.c.project_id == project.c.submitter_id))
                 .order_by(project.c.submitter_id))
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(statement).mappings()]


def add_project(engine: Engine, name: str, availability: str = "open", *, program: str = "RadCommons",
                actor: str = "admin-cli") -> dict[str, Any]:
    """Create project ``name`` (or change the availability of an existing one)."""
    availability = check_availability(availability)
    name = check_project_name(name.strip())
    tables = node_tables()
    project, programs = tables["project"], tables["program"]
    with engine.begin() as conn:
        found = conn.execute(select(project.c.id).where(project.c.submitter_id == name)).scalar()
        if found is not None:
            conn.execute(update(project).where(project.c.id == found).values(availability=availability))
            action = "project.availability"
        else:
            program_id = conn.execute(select(programs.c.id).where(programs.c.submitter_id == program)).scalar()
            if program_id is None:
                program_id = conn.execute(insert(programs).values(submitter_id=program, name=program,
                                                                  created_by=actor).returning(programs.c.id)).scalar_one()
            conn.execute(insert(project).values(project_id=name, submitter_id=name, name=name, availability=availability,
                                                program_id=program_id, created_by=actor))
            action = "project.add"
        record_audit(conn, actor=actor, action=action, target=name, project=name, records=1,
                     detail={"availability": availability})
    return next(p for p in list_projects(engine) if p["submitter_id"] == name)
