"""RadCommons: an open-source medical imaging data commons.

The package is layered; each layer imports only from the layers below it
(see ``docs/ARCHITECTURE.md``, enforced by ``import-linter`` in the test suite):

* domain (pure, no storage, no HTTP): :mod:`radcommons.dicom`,
  :mod:`radcommons.dictionary`, :mod:`radcommons.synth`, and later
  ``deid``, ``harmonize`` and ``science``;
* persistence: :mod:`radcommons.store` (the index and the object store);
* pipelines: :mod:`radcommons.pipelines` (contribute, ingest, export);
* interfaces: :mod:`radcommons.cli` (and later the server and web UI).
"""

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """``radcommons.Client``, imported on first use so that ``import radcommons`` stays fast."""
    if name == "Client":
        # By name, not an import statement: the root package stays below every layer for import-linter.
        import importlib

        return importlib.import_module("radcommons.client.research").Client
    raise AttributeError(f"module 'radcommons' has no attribute {name!r}")
