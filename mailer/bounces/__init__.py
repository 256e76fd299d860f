"""Bounces and complaints close the loop (issue 19): VERP return paths, parsing, processing.

Pure: `verp` (tokens and return paths), `parse` (message -> Report), `decide` (Report +
what the database knows -> Decision). I/O: `process` (one transaction per batch),
`receiver` (the SMTP receiver), `mailbox` (Maildir and IMAP), `rates` (per campaign).
"""

from mailer.bounces.parse import Report, classify
from mailer.bounces.verp import new_return_token, return_path

__all__ = ["Report", "classify", "new_return_token", "return_path"]
