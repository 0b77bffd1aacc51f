"""Fuzz the research API from its own OpenAPI document with schemathesis (in-process ASGI, admin token).

A bounded number of generated requests per operation (the whole file stays well under a minute):
no request may end in a 500, and no response may violate the schema the route declares.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from research_support import ResearchCommons
from schemathesis.checks import not_a_server_error, response_schema_conformance

from radcommons.server.app import create_app
from radcommons.settings import Settings

#: The research API's routes (the submission API and DICOMweb have their own tests).
RESEARCH_PATHS = (r"^/api/v1/(query|facets|export|manifest|cohorts|summary|dua|projects|admin/audit|objects"
                  r"|index\.parquet|datasets|cases|studies$|series|instances|measurements|visits|conditions"
                  r"|medications|procedures|observations)")


@pytest.fixture(scope="module")
def api_schema(research_commons: ResearchCommons) -> schemathesis.BaseSchema:
    server = research_commons.server
    app = create_app(Settings(database_url=server.db_url, object_store_url=str(server.store_dir)),
                     state_dir=server.root / "fuzz-state")
    return schemathesis.openapi.from_asgi("/openapi.json", app).include(path_regex=RESEARCH_PATHS)


def test_research_api_fuzz(api_schema: schemathesis.BaseSchema, research_commons: ResearchCommons) -> None:
    """Each research operation, a bounded number of generated cases (schemathesis' pytest loader is not used:
    its lazy fixture support does not work with this pytest)."""
    headers = research_commons.headers("admin")
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 20

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=10, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, checks=[not_a_server_error, response_schema_conformance])

        try:
            run()
        except Exception as error:  # noqa: BLE001 - collected: every operation is tried
            failures.append(f"{operation.method.upper()} {operation.path}: {str(error)[:1500]}")
    assert not failures, "\n\n".join(failures)
