"""The session commons of the export tests lives in export_support.py (a unique module name); it is
built on ``deid_tree`` of tests/conftest.py."""

from export_support import commons  # noqa: F401
