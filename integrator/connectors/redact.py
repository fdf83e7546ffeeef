"""Keep secrets out of logs, the store's shown columns, error messages and dry-run output.

Three nets: by key (``password``, ``token``, ``Authorization`` ...), by value (every secret
the configuration interpolated, the credentials of URLs in it, login tokens, and secrets found
in ``channel.conf``; each also as it appears inside a JSON string and percent-encoded in a
URL), and by shape (the password of a URL's userinfo, ``https://user:***@host``, and a query
parameter named like a secret, ``?api_key=***``, wherever a URL appears in a text).

Masking is for what is shown. It never touches what the runner uses later: the ERP's answer
and the request kept for a resume are stored as they were, and masked where they are shown.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

from integrator.config.interpolate import MIN_SECRET, SECRET_KEY_RE, is_secret_key

if TYPE_CHECKING:
    from integrator.config.model import AppConfig

__all__ = [
    "MASK",
    "Redactor",
    "known_secrets",
    "scrub_urls",
    "strip_channel_conf",
    "url_secrets",
]

MASK = "***"
_MIN_LEARNED = 4  # shorter values would mask ordinary text (validate refuses short secrets)
_MIN_CONF_VALUE = 8  # a channel.conf value under a key that does not look secret
# A JSON object key that names a secret: ``"…password…":``
_SECRET_KEY_IN_JSON = re.compile(r'"[^"]*' + SECRET_KEY_RE.pattern + r'[^"]*"\s*:', re.IGNORECASE)
# Every secret key contains one of these (lower case): a cheap test before the regex
_KEY_HINTS = ("passw", "secret", "token", "auth", "key", "connection")
# A query parameter whose name says it carries a credential, beyond the secret keys
_SECRET_PARAM_RE = re.compile(
    SECRET_KEY_RE.pattern + r"|signature|credential|session"
    r"|^(?:key|sig|auth|pass|pwd|pw|jwt|hmac|sas|x-api-key)$",
    re.IGNORECASE,
)
# ``scheme://userinfo@``: the userinfo ends at the netloc's last ``@`` (as urlsplit reads it)
_USERINFO = re.compile(
    r"""(\b[A-Za-z][A-Za-z0-9+.-]*://)([^\s/?#@"'<>\\]*(?:@[^\s/?#@"'<>\\]*)*)@"""
)
# ``?name=value`` / ``&name=value`` (``;`` too); the value ends at a separator or a quote
_PARAM = re.compile(r"""([?&;])([^\s=&;#?"'<>\\]+)=([^\s&;#"'<>\\]*)""")


def _secret_param(name: str) -> bool:
    return bool(_SECRET_PARAM_RE.search(unquote(name)))


def _mask_userinfo(m: re.Match[str]) -> str:
    user, colon, _password = m.group(2).partition(":")
    # ``user:password@``: the user stays; a lone ``token@`` is masked whole
    return m.group(1) + (f"{user}:{MASK}@" if colon else f"{MASK}@")


def _mask_param(m: re.Match[str]) -> str:
    if not m.group(3) or m.group(3) == MASK or not _secret_param(m.group(2)):
        return m.group(0)
    return f"{m.group(1)}{m.group(2)}={MASK}"


def _has_url_secret(text: str) -> bool:
    """Cheap first: a URL with userinfo, or a secret-named query parameter."""
    if "://" in text and "@" in text and _USERINFO.search(text):
        return True
    if "=" in text:
        for m in _PARAM.finditer(text):
            if m.group(3) and m.group(3) != MASK and _secret_param(m.group(2)):
                return True
    return False


def scrub_urls(text: str) -> str:
    """``text`` with URL userinfo passwords and secret-named query values masked (no known
    secret needed: for messages printed before a project is loaded)."""
    if "://" in text and "@" in text:
        text = _USERINFO.sub(_mask_userinfo, text)
    if "=" in text:
        text = _PARAM.sub(_mask_param, text)
    return text


def url_secrets(url: str) -> list[str]:
    """The credentials a URL carries: its userinfo password (a lone userinfo: all of it) and
    the values of its secret-named query parameters, as written and decoded."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return []
    found: list[str] = []
    if "@" in parts.netloc:
        userinfo = parts.netloc.rpartition("@")[0]
        user, colon, password = userinfo.partition(":")
        found.append(password if colon else user)
    found += [v for k, v in parse_qsl(parts.query, keep_blank_values=True) if _secret_param(k)]
    out = [s for s in found if s]
    return out + [unquote(s) for s in out if unquote(s) != s]


def known_secrets(app: AppConfig) -> set[str]:
    """Every secret the configuration holds: the interpolated ones and the credentials in the
    connectors' URLs (Host, TokenUrl, and properties such as WebhookEndpoint)."""
    found = set(app.secrets)
    for c in app.connectors:
        auth_urls = c.auth.urls() if c.auth is not None else ()
        for url in (c.host, *auth_urls, *(v for _k, v in c.properties)):
            if isinstance(url, str) and ("@" in url or "?" in url):
                found.update(url_secrets(url))
    for n in app.notifiers:  # a webhook's URL is its credential (Slack's carries the token)
        if n.url:
            found.add(n.url)
            where = urlsplit(n.url)
            path = where.path + (f"?{where.query}" if where.query else "")
            if len(path) >= MIN_SECRET:
                found.add(path)
            found.update(url_secrets(n.url))
        found.update(v for k, v in n.headers if is_secret_key(k) and len(v) >= MIN_SECRET)
        if n.password:
            found.add(n.password)
    return found


def _variants(secret: str) -> set[str]:
    """A secret as it may appear: as is, percent-encoded in a URL, and escaped inside a JSON
    string in a text (an ERP's error echoing a request: non-ASCII as ``\\u00e4``, ``/`` as
    ``\\/`` as PHP writes it)."""
    found = {secret, quote(secret, safe=""), quote_plus(secret, safe=""), quote(secret)}
    for ascii_only in (False, True):
        escaped = json.dumps(secret, ensure_ascii=ascii_only)[1:-1]
        found |= {escaped, escaped.replace("/", "\\/")}
    return found


class Redactor:
    """Scrubs known secret values and URL credentials from text, and secret-named keys from
    documents. For what is shown; the runner's own data is never passed through it."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        self._in_json: tuple[str, ...] = ()  # the secrets as they appear inside a JSON string
        self._longest = 0  # the length of the longest
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Learn more secret values (short ones are ignored: they would mask ordinary text)."""
        new = {s for s in secrets if isinstance(s, str) and len(s) >= _MIN_LEARNED}
        with self._lock:
            merged = set(self._secrets)
            for s in new:
                merged |= {v for v in _variants(s) if len(v) >= _MIN_LEARNED}
            if len(merged) == len(self._secrets):
                return
            # Longest first, so a secret containing another is masked whole.
            self._secrets = tuple(sorted(merged, key=len, reverse=True))
            self._in_json = tuple(json.dumps(s, ensure_ascii=False)[1:-1] for s in self._secrets)
            self._longest = len(self._secrets[0])

    def excerpt(self, text: str, limit: int) -> str:
        """The first ``limit`` characters of ``text``, scrubbed before the cut: a secret that
        the cut would split is masked whole, never shown in part."""
        margin = max(self._longest, 1024)  # past any known secret and most URL credentials
        window = limit + margin
        while True:
            shown = self.scrub(text[:window])
            # What the window cut off is in its last ``margin`` characters: beyond ``limit``.
            if window >= len(text) or len(shown) >= limit + margin:
                return shown[:limit]
            window *= 2

    def scrub(self, text: str) -> str:
        """``text`` with every known secret value and URL credential replaced by the mask."""
        for s in self._secrets:
            if s in text:
                text = text.replace(s, MASK)
        return scrub_urls(text)

    def redact(self, value: Any) -> Any:
        """``value`` with secret keys masked and secret values scrubbed (a copy when it changed).

        A document is serialised once (in C) and searched for secret values, secret-named keys
        and URL credentials; most have none and come back as they are, without a walk in Python.
        """
        if isinstance(value, dict | list) and self._clean_json(value) is not None:
            return value
        return self._redact(value)

    def redact_json(self, value: Any) -> str:
        """The JSON text of ``value`` redacted: a clean document is serialised once, for the
        check and the text alike."""
        text = self._clean_json(value) if isinstance(value, dict | list) else None
        if text is None:
            text = json.dumps(self._redact(value), ensure_ascii=False, default=str)
        return text

    def _clean_json(self, value: Any) -> str | None:
        """The JSON text of ``value`` when it holds no secret value, secret-named key or URL
        credential."""
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):  # circular or odd keys: walk it
            return None
        low = text.lower()  # a substring test first: the key regex is slow to fail
        if (
            (any(h in low for h in _KEY_HINTS) and _SECRET_KEY_IN_JSON.search(text))
            or any(s in text for s in self._in_json)
            or _has_url_secret(text)
        ):
            return None
        return text

    def _redact(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: (MASK if is_secret_key(str(k)) and v not in (None, "") else self._redact(v))
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self._redact(v) for v in value]
        if isinstance(value, str):
            return self.scrub(value)
        return value


def _mask_all(node: Any, secret: bool, found: list[str]) -> Any:
    """``node`` with every value masked (keys and shape kept); the values worth learning
    (secret-keyed ones, long ones, the credentials of URLs) are appended to ``found``."""
    if isinstance(node, dict):
        return {k: _mask_all(v, secret or is_secret_key(str(k)), found) for k, v in node.items()}
    if isinstance(node, list):
        return [_mask_all(v, secret, found) for v in node]
    if node is None or node == "":
        return node
    text = str(node)
    if isinstance(node, str):
        if "://" in text:  # a URL: its credentials (its host is no secret)
            found += url_secrets(text)
        elif secret or len(text) >= _MIN_CONF_VALUE:
            found.append(text)
    return MASK


def strip_channel_conf(order: dict[str, Any], redactor: Redactor) -> dict[str, Any]:
    """Mask ``channel.conf`` whole and teach ``redactor`` its values.

    Omnitron's detailed order embeds the sales channel's configuration, credentials included,
    as an object or as a JSON string. Every value under it is masked, whatever its key (keys
    and shape are kept, a JSON string stays a JSON string), before any script, mapping, write,
    export, log or the store sees the order. No flow gets the real values: a flow that needs
    one configures it itself (a secret in config.yaml or the flow file).
    """
    channel = order.get("channel")
    if not isinstance(channel, dict) or channel.get("conf") in (None, "", {}, []):
        return order
    conf = channel["conf"]
    found: list[str] = []
    if isinstance(conf, str):
        try:
            parsed = json.loads(conf)
        except ValueError:  # not JSON: the whole text is the value
            parsed = None
        if isinstance(parsed, dict | list):
            masked: Any = json.dumps(_mask_all(parsed, False, found), ensure_ascii=False)
        else:
            masked = _mask_all(conf, True, found)
    else:
        masked = _mask_all(conf, False, found)
    redactor.add(found)
    channel["conf"] = masked
    return order
