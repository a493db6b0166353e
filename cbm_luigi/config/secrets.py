"""Hiding secrets in text: passwords in connection strings and URLs, query-string signatures, the values of
secret-looking environment variables.  Every message that may quote a connection string goes through here.
"""

from __future__ import annotations

import os
import re

# A value already redacted (``PWD=***``) is left as it is: redacting a message twice must not swallow what follows.
_SECRET_KV = re.compile(r"(?i)\b(PWD|PASSWORD)\s*=\s*(?!\*\*\*)(\{[^}]*\}|[^;]*)")


_SCHEME_SEP = re.compile(r"://")


def _redact_url_passwords(text: str) -> str:
    """``scheme://user:secret@host`` -> ``scheme://user:***@host``, in linear time (no regex backtracking over
    long error messages: each ``://`` looks at most 1 KB ahead for its ``@``)."""
    parts: list[str] = []
    pos = 0
    for m in _SCHEME_SEP.finditer(text):
        start = m.end()
        if start < pos:
            continue
        at = text.find("@", start, start + 1024)
        if at == -1:
            continue
        userinfo = text[start:at]
        colon = userinfo.find(":")
        if colon == -1 or any(c.isspace() or c == "/" for c in userinfo):
            continue
        parts.append(text[pos:start + colon + 1])
        parts.append("***")
        pos = at
    parts.append(text[pos:])
    return "".join(parts)


def redact(text: str) -> str:
    """Hide passwords in an ODBC connection string or a URL, for logs and messages."""
    text = _SECRET_KV.sub(lambda m: f"{m.group(1)}=***", text)
    return _redact_url_passwords(text)


_SECRET_NAME = re.compile(r"PASSWORD|PASSWD|_PWD$|^PWD_|SECRET|TOKEN|WEBHOOK|API_?KEY|CREDENTIAL", re.I)


_QUERY_SECRET = re.compile(r"(?i)([?&](?:sig|signature|code|token|access_token|key|api-key)=)[^&\s\"']+")


def secret_values() -> list[str]:
    """Values of environment variables whose names mark them as secrets (longest first)."""
    values = {v for k, v in os.environ.items() if _SECRET_NAME.search(k) and v and len(v) >= 4}
    return sorted(values, key=len, reverse=True)


def redact_text(text: str, secrets: list[str] | None = None) -> str:
    for value in secret_values() if secrets is None else secrets:
        if value in text:
            text = text.replace(value, "***")
    text = _QUERY_SECRET.sub(lambda m: m.group(1) + "***", text)
    return redact(text)
