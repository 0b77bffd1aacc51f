"""The one access decision (radcommons.roles): availabilities it does not know are held back."""

from __future__ import annotations

import pytest

from radcommons import roles
from radcommons.errors import UserError

AVAILABILITY = {"Open-A1": "open", "Restricted-R1": "restricted", "Seq-S1": "sequestered",
                "Odd-1": "Sequestered", "Odd-2": "weird", "Odd-3": None}


@pytest.mark.parametrize("role", ["researcher", "contributor"])
def test_only_open_and_granted_restricted_projects_are_read(role: str) -> None:
    """A value stored before availabilities were checked (a capital letter, a typo) must not open
    a project: the rule fails closed, whatever the grants."""
    grants = set(AVAILABILITY)
    assert roles.readable_projects(role, grants, AVAILABILITY) == {"Open-A1", "Restricted-R1"}
    assert roles.readable_projects(role, set(), AVAILABILITY) == {"Open-A1"}


def test_curators_read_everything() -> None:
    assert roles.readable_projects("curator", set(), AVAILABILITY) is None


def test_availability_is_checked_and_stored_in_lower_case() -> None:
    assert roles.check_availability(" Sequestered ") == "sequestered"
    with pytest.raises(UserError, match="unknown availability 'weird'"):
        roles.check_availability("weird")


@pytest.mark.parametrize("name", ["", "../x", "a b", "-lead", "x" * 65, "é"])
def test_a_project_name_that_cannot_be_a_submitter_id_is_refused(name: str) -> None:
    with pytest.raises(UserError, match="cannot name a project"):
        roles.check_project_name(name)


@pytest.mark.parametrize("site", ["", " ", ".", "..", "../x", "a/b", "a b", "-x", "x" * 65])
def test_a_site_identifier_that_could_be_a_path_is_refused(site: str) -> None:
    with pytest.raises(UserError, match="invalid site identifier"):
        roles.check_site_id(site)
    assert roles.check_site_id(" SITE_A ") == "SITE_A"
