"""The compliance program's records (issue 17): the evidence the seed asks a center to keep,
and the gates that use it.

    training     TRN-1: author and approver hold current HIPAA-marketing training
    assets       TST-1/TST-5: testimonials, quotes, stories, patient images with consent
    risk         RSK-1/RSK-2: a new initiative needs an approved risk assessment
    complaints   CMP-1: complaints and privacy concerns, encrypted, with status
    forms        AUTH-1..AUTH-3, AUTH-8, MKT-6: plain-language authorization forms
    quarterly    QRV-1: the quarterly review, signed off in the ledger

Decisions are pure functions over records; store I/O lives beside them, each record
written with its `compliance` ledger entry in one transaction. Services take the acting
`Principal` and check the permissions table (mailer.accounts) before they act.
"""
