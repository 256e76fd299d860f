"""`mailer sink`: a local STARTTLS SMTP server that keeps each message as an .eml file.

For trying mailer without a relay (the README walk-through, `make demo`, the Docker
stack). It makes a throwaway CA, so the client still verifies the certificate and
hostname (TLS-3) and still requires STARTTLS (TLS-1): nothing about the send path is
relaxed for it.
"""

from mailer.sink.files import EmlWriter, SinkStats
from mailer.sink.server import LocalSink, PortInUse, smtp_settings

__all__ = ["EmlWriter", "LocalSink", "PortInUse", "SinkStats", "smtp_settings"]
