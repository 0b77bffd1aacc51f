"""Harmonization: LOINC / RSNA Radiology Playbook study codes and normalised enumerations."""
