"""Keep secrets out of logs, the store, error messages and payloads sent on.

Two nets: by key (``password``, ``token``, ``Authorization``, ``channel.conf`` ...) and by value
(every secret the configuration interpolated, plus secrets found in ``channel.conf``).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable
from typing import Any

from integrator.config.interpolate import SECRET_KEY_RE, is_secret_key

__all__ = ["MASK", "Redactor", "strip_channel_conf"]

MASK = "***"
# A JSON object key that names a secret: ``"…password…":``
_SECRET_KEY_IN_JSON = re.compile(r'"[^"]*' + SECRET_KEY_RE.pattern + r'[^"]*"\s*:', re.IGNORECASE)


class Redactor:
    """Scrubs known secret values from text and secret-named keys from documents."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        self._in_json: tuple[str, ...] = ()  # the secrets as they appear inside a JSON string
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Learn more secret values (short ones are ignored: they would mask ordinary text)."""
        with self._lock:
            merged = set(self._secrets) | {s for s in secrets if isinstance(s, str) and len(s) >= 4}
            # Longest first, so a secret containing another is masked whole.
            self._secrets = tuple(sorted(merged, key=len, reverse=True))
            self._in_json = tuple(json.dumps(s, ensure_ascii=False)[1:-1] for s in self._secrets)

    def scrub(self, text: str) -> str:
        """``text`` with every known secret value replaced by the mask."""
        for s in self._secrets:
            if s in text:
                text = text.replace(s, MASK)
        return text

    def redact(self, value: Any) -> Any:
        """``value`` with secret keys masked and secret values scrubbed (a copy when it changed).

        A document is serialised once (in C) and searched for secret values and secret-named
        keys; most have neither and come back as they are, without a walk in Python.
        """
        if isinstance(value, dict | list) and self._clean_json(value) is not None:
            return value
        return self._redact(value)

    def redact_json(self, value: Any) -> str:
        """The JSON text of ``value`` redacted, as the store keeps it: a clean document is
        serialised once, for the check and the text alike."""
        text = self._clean_json(value) if isinstance(value, dict | list) else None
        if text is None:
            text = json.dumps(self._redact(value), ensure_ascii=False, default=str)
        return text

    def _clean_json(self, value: Any) -> str | None:
        """The JSON text of ``value`` when it holds no secret value or secret-named key."""
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):  # circular or odd keys: walk it
            return None
        if _SECRET_KEY_IN_JSON.search(text) or any(s in text for s in self._in_json):
            return None
        return text

    def _redact(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: (MASK if is_secret_key(str(k)) and v not in (None, "") else self._redact(v))
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self._redact(v) for v in value]
        if isinstance(value, str):
            return self.scrub(value)
        return value


def strip_channel_conf(order: dict[str, Any], redactor: Redactor) -> dict[str, Any]:
    """Replace ``channel.conf`` by a masked copy and teach ``redactor`` its secrets.

    Omnitron's detailed order embeds the sales channel's credentials; they must never reach a
    script, a mapping, the ERP, a log or the store.
    """
    channel = order.get("channel")
    if isinstance(channel, dict) and isinstance(channel.get("conf"), dict):
        conf = channel["conf"]
        found: list[str] = []

        def collect(node: Any, secret: bool) -> None:
            if isinstance(node, dict):
                for k, v in node.items():
                    collect(v, secret or is_secret_key(str(k)))
            elif isinstance(node, list):
                for v in node:
                    collect(v, secret)
            elif secret and isinstance(node, str):
                found.append(node)

        collect(conf, False)
        redactor.add(found)
        channel["conf"] = redactor.redact(conf)
    return order
