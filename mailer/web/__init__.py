"""The ASGI app: one-click unsubscribe (RFC 8058) and nothing that needs a login."""

from mailer.web.app import create_app

__all__ = ["create_app"]
