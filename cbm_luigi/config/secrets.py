"""Hiding secrets in text: passwords in connection strings and URLs, query-string signatures, the values of
secret-looking environment variables.  Every message that may quote a connection string goes through here.
"""

from __future__ import annotations

import html
import os
import re
from urllib.parse import quote, unquote, urlsplit

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


_SECRET_PARAM = re.compile(r"(?i)^(sig|signature|code|token|access_token|key|api-key|apikey|secret|password)$")
_URL_NAME = re.compile(r"WEBHOOK|_URL$", re.I)


def _forms(text: str) -> set[str]:
    """A piece of a URL as a reply may quote it: as it is, percent-decoded or -encoded, HTML-escaped
    (``&amp;``), JSON-escaped (``\\/``)."""
    forms = {text, unquote(text), quote(text, safe=""), quote(unquote(text), safe="")}
    for f in list(forms):
        forms.add(html.escape(f, quote=True))
        forms.add(f.replace("/", "\\/"))
    return forms


def url_secrets(url: str) -> set[str]:
    """What must never be shown of a configured URL (a webhook's ``sig=`` is its password): the URL itself,
    its query string, and the value of each query parameter (any secret-named one, and any long one), in every
    form a reply may quote them."""
    url = url.strip()
    found: set[str] = set()
    try:
        query = urlsplit(url).query
    except ValueError:
        query = ""
    if query:
        found |= _forms(url) | _forms(query) | _forms("?" + query)
        for pair in query.split("&"):
            name, _, value = pair.partition("=")
            if value and (_SECRET_PARAM.match(unquote(name)) or len(unquote(value)) >= 12):
                found |= _forms(value)
    elif "://" in url:
        found |= _forms(url)
    return {f for f in found if len(f) >= 6}


def configured_urls() -> list[str]:
    """The URLs of secret settings (``CBM_TEAMS_WEBHOOK``: several, separated by spaces)."""
    return [u for k, v in os.environ.items() if v and _SECRET_NAME.search(k) and _URL_NAME.search(k)
            for u in v.split() if "://" in u]


def secret_values() -> list[str]:
    """Values of environment variables whose names mark them as secrets, and every form of the configured
    webhook URLs and of their query strings (longest first)."""
    values = {v for k, v in os.environ.items() if _SECRET_NAME.search(k) and v and len(v) >= 4}
    for url in configured_urls():
        values |= url_secrets(url)
    return sorted(values, key=len, reverse=True)


def redact_text(text: str, secrets: list[str] | None = None) -> str:
    for value in secret_values() if secrets is None else secrets:
        if value in text:
            text = text.replace(value, "***")
    text = _QUERY_SECRET.sub(lambda m: m.group(1) + "***", text)
    return redact(text)
