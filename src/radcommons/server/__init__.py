"""The commons HTTP server (FastAPI): submission API, later the research API, DICOMweb and the explorer."""
