"""ML-ready export: pure conversions (NIfTI volumes, PNG radiographs, patient-level splits, datasheets)."""
