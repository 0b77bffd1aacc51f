"""Fixtures of the de-identification tests (defined with their helpers in deid_support)."""

from deid_support import *  # noqa: F403  (pytest collects the fixtures from here)
