"""Payloads: the Adaptive Card of a Power Automate "Workflows" webhook and the MessageCard sections of the legacy
Office 365 connector, kept under the Teams size limit.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any

from cbm_luigi.alerts.message import Alert, excerpt

log = logging.getLogger(__name__)


ADAPTIVE_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"


ADAPTIVE_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"


ADAPTIVE_VERSION = "1.4"


def _card_json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def adaptive_card(alert: Alert, error_chars: int, compact: bool = False) -> dict[str, Any]:
    """The Adaptive Card (schema 1.4) for ``alert`` (without the message envelope)."""
    style, color, _ = alert.style
    body: list[dict[str, Any]] = [{
        "type": "Container", "style": style, "bleed": True,
        "items": [
            {"type": "TextBlock", "text": alert.title, "weight": "Bolder", "size": "Medium", "wrap": True,
             "color": color},
            {"type": "TextBlock", "text": f"{alert.severity} · {alert.alert_type.replace('_', ' ')}",
             "isSubtle": True, "spacing": "None", "wrap": True},
        ],
    }]
    if alert.text and not compact:
        body.append({"type": "TextBlock", "text": alert.text, "wrap": True})
    if alert.facts:
        body.append({"type": "FactSet",
                     "facts": [{"title": k, "value": v} for k, v in alert.facts]})
    if alert.error and error_chars > 0:
        body.append({"type": "TextBlock", "text": "Error", "weight": "Bolder", "spacing": "Medium"})
        body.append({"type": "TextBlock", "text": excerpt(alert.error, error_chars), "wrap": True,
                     "fontType": "Monospace", "size": "Small"})
    card: dict[str, Any] = {
        "$schema": ADAPTIVE_SCHEMA, "type": "AdaptiveCard", "version": ADAPTIVE_VERSION,
        "msteams": {"width": "Full"}, "body": body,
    }
    if alert.link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": alert.link_title, "url": alert.link}]
    return card


def workflow_payload(alert: Alert, max_bytes: int = 24_000, error_chars: int = 2_000,
                     compact: bool = False) -> bytes:
    """The JSON body posted to a Workflows webhook, shortened (error first, then facts) to fit ``max_bytes``."""
    chars = min(error_chars, 300) if compact else error_chars
    facts = alert.facts
    while True:
        a = replace(alert, facts=facts)
        envelope = {"type": "message", "attachments": [{
            "contentType": ADAPTIVE_CONTENT_TYPE, "contentUrl": None, "content": adaptive_card(a, chars, compact),
        }]}
        data = _card_json(envelope)
        if len(data) <= max_bytes:
            return data
        if alert.error and chars > 200:
            chars //= 2
        elif any(len(v) > 200 for _, v in facts):
            facts = tuple((k, excerpt(v, 200)) for k, v in facts)
        elif len(facts) > 5:
            facts = (*facts[:5], ("…", f"{len(alert.facts) - 5} more lines not shown"))
        elif not compact:
            compact = True
        else:
            raise ValueError(f"alert {alert.title!r} does not fit in {max_bytes} bytes")


def message_card_sections(alert: Alert, error_chars: int) -> tuple[str, list[tuple[str, str]]]:
    text = alert.text
    if alert.error and error_chars > 0:
        text = (text + "\n\n" if text else "") + "**Error**\n\n```\n" + excerpt(alert.error, error_chars) + "\n```"
    return text, list(alert.facts)
