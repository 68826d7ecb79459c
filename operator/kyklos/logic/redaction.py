"""Masking credentials in text that reaches status, Events and logs.

Shared by the workers (their termination messages) and the operator (conditions it writes
from a user's URI): a URI may carry ``user:pass@`` or a signed query string.
"""

from __future__ import annotations

import re

_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")
_QUERY = re.compile(r"(?P<head>://[^\s?#'\"]*)\?[^\s#'\"]*?(?=:\s|:$|[\s#'\"]|$)")


def redact(text: str) -> str:
    """Mask credentials a URI may carry (``user:pass@``, signed query strings) in text."""
    return _QUERY.sub(r"\g<head>?***", _USERINFO.sub(r"\g<scheme>***@", text))
