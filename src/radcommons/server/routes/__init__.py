"""The API's routers, one module per area (health, auth, submissions, uploads, quarantine)."""
