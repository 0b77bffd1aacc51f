"""DICOMweb (PS3.18) over the commons index and object store: QIDO-RS, WADO-RS, STOW-RS.

The routes are in :mod:`radcommons.server.routes.dicomweb` (base path ``/dicomweb``); this
package holds what they do, one module per service:

* :mod:`.qido`: searches compiled to SQL over the index tables (PS3.18 10.6);
* :mod:`.wado`: instance lookup, multipart streaming, metadata, rendered images and thumbnails,
  frames (10.4);
* :mod:`.stow`: stored instances through the verification gate into the index (10.5);
* :mod:`.multipart`: ``multipart/related`` writing and streaming parsing (8.6.1.2);
* :mod:`.headers`: cached header reads of stored instances.

Who may read what is decided by :func:`radcommons.server.access.readable_projects` only.
"""
