"""The web workspace (issue 16): marketers, staff and reviewers work here, signed in.

    create_workspace(rt) -> Starlette   (mounted beside /u/ by mailer.web.server)

Server-rendered pages (Starlette + Jinja2), no JavaScript. Every page acts as the
signed-in account through the same services and permission table as the CLI.
"""

from mailer.web.workspace.routes import create_workspace

__all__ = ["create_workspace"]
