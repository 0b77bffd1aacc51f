"""Users' roles and token lifetime (plain data shared by the index, the server and the CLI).

* admin: everything, including users, tokens, projects and the audit trail;
* curator: every project; quarantine review; no data use agreement needed;
* contributor: submits to the projects granted to it, for its own site;
* researcher: reads open projects (and restricted ones it is granted) after accepting the
  data use agreement; never sequestered data.
"""

ROLES = ("admin", "curator", "contributor", "researcher")

#: Days an API token lives unless its creator says otherwise.
DEFAULT_TOKEN_DAYS = 30
