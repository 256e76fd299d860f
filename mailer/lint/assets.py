"""Consent-backed assets (TST-1): the hook through which quotes, patient stories and patient
images may enter a template without a review finding.

Today no registry exists, so every testimonial, story or patient image the lint finds is a
`review` finding: a reviewer checks the authorization and acknowledges it at approval. A
compliance-records module can register a checker here (`set_registry`); a template that
names a registered asset with `{# asset: ID #}` (or the older `{# authorization: ID #}`)
then passes without review for the content that asset covers.
"""

from __future__ import annotations

import re
from collections.abc import Callable

ASSET_REF = re.compile(
    r"\{#-?\s*(?:asset|authori[sz]ation)\s*(?:ref(?:erence)?|id|no\.?|number|#)?\s*[:#]?\s*(?P<id>[A-Za-z0-9][A-Za-z0-9_-]*)",
    re.IGNORECASE,
)

_registry: Callable[[str], bool] | None = None


def set_registry(check: Callable[[str], bool] | None) -> None:
    """Install the function that says whether an asset ID is registered with its consent."""
    global _registry
    _registry = check


def registered_refs(template_text: str) -> list[str]:
    """Asset IDs the template names that the registry confirms (none without a registry)."""
    if _registry is None:
        return []
    return [m.group("id") for m in ASSET_REF.finditer(template_text) if _registry(m.group("id"))]
