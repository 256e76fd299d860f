"""Consent-backed assets (TST-1): the hook through which quotes, patient stories and patient
images may enter a template without a review finding.

Since issue 17 a template uses a registered asset as `{{ asset('key') }}`: the patient's
words or image are inserted at render time, after mailer.compliance.assets has checked the
consent (TST-5), so they are never in the template text the lint reads. Any other
testimonial, story or patient image the lint finds is a `review` finding that a reviewer
acknowledges at approval. The older `{# asset: ID #}` comment form is honoured only when a
checker is installed with `set_registry` (none is, by default).
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
