"""The session commons of the export tests lives in export_support.py (a unique module name)."""

from export_support import commons  # noqa: F401
