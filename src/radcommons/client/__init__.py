"""HTTP clients of the commons: the uploader used by contribute and the gateway, later the researcher client."""
