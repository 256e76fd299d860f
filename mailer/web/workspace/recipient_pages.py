"""One recipient's details: a separate, permission-checked action with a reason (issue 16).

GET shows a form for a contact id and the reason; POST calls `mailer.recipients.view_recipient`
(which checks `contacts.view`, refuses a missing reason and records an `access` entry) and
answers the details in that response: nothing identifying reaches a URL, a page title, a
redirect or a log. The response is `no-store` like every workspace page.
"""

from __future__ import annotations

from starlette.responses import Response

from mailer.accounts.permissions import Action
from mailer.errors import InputError
from mailer.recipients import REASON_MAX, view_recipient
from mailer.web.workspace.core import Ctx, page


@page(Action.CONTACTS_VIEW)
def recipient_lookup(c: Ctx) -> Response:
    errors: dict[str, str] = {}
    contact = (c.form.get("contact", "") if c.request.method == "POST" else c.q("contact"))[:12]
    if c.request.method == "POST":
        if not contact.isdigit():
            errors["contact"] = "the contact's id (a number, as the ledger and the authorizations list show it)"
        else:
            try:
                detail = view_recipient(c.rt, c.principal, int(contact), c.form.get("reason", "")[:REASON_MAX + 50])
            except InputError as e:
                if "does not exist" in e.message:
                    errors["contact"] = e.message
                else:
                    errors["reason"] = e.message + (f" ({e.hint})" if e.hint else "") + \
                        (f" [{', '.join(e.rules)}]" if e.rules else "")
            else:
                return c.render("recipient.html", d=detail)
    return c.render("recipient_form.html", 400 if errors else 200, contact=contact, errors=errors,
                    reason_max=REASON_MAX)
