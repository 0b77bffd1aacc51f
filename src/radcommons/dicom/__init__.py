"""Generic DICOM helpers shared by synthesis, de-identification and ingest.

Modules are named for what they hold: :mod:`radcommons.dicom.uid` (UID
generation, PS3.5 §9 and Annex B).
"""
