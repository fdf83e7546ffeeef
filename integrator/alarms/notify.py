"""Notifiers: a JSON webhook (Slack's incoming-webhook shape, or a Jinja2 template) and email
over SMTP. Every send is bounded by the notifier's timeout; no redirect is followed. What goes
wrong is told without the URL (it may carry a token) or the password."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from integrator.alarms.config import NotifierConfig

__all__ = ["Notice", "NotifyError", "send"]


class NotifyError(Exception):
    """A notice could not be delivered (the message names no secret)."""


@dataclass(frozen=True)
class Notice:
    """What one notice says."""

    flow: str
    alarm: str
    kind: str  # firing, reminder, recovered
    condition: str  # the condition in words
    value: float | None
    message: str  # what was measured

    @property
    def title(self) -> str:
        """One line: what, where."""
        word = {"firing": "FIRING", "reminder": "STILL FIRING", "recovered": "RECOVERED"}
        return f"[{word.get(self.kind, self.kind)}] {self.flow}: {self.alarm}"

    @property
    def text(self) -> str:
        """The title and the details."""
        return f"{self.title} ({self.condition}): {self.message}"

    def fields(self) -> dict[str, Any]:
        """What a template reads."""
        return {
            "flow": self.flow,
            "alarm": self.alarm,
            "kind": self.kind,
            "state": "ok" if self.kind == "recovered" else "firing",
            "condition": self.condition,
            "value": self.value,
            "message": self.message,
            "title": self.title,
            "text": self.text,
        }


def send(notifier: NotifierConfig, notice: Notice, secrets: frozenset[str] = frozenset()) -> None:
    """Deliver ``notice``; NotifyError when it cannot be."""
    try:
        if notifier.type == "webhook":
            _webhook(notifier, notice)
        else:
            _email(notifier, notice)
    except NotifyError as exc:
        raise NotifyError(_scrub(str(exc), notifier, secrets)) from None
    except Exception as exc:  # noqa: BLE001 - any failure of a send is reported, named
        raise NotifyError(_scrub(f"{type(exc).__name__}: {exc}", notifier, secrets)) from None


def _scrub(text: str, n: NotifierConfig, secrets: frozenset[str]) -> str:
    for secret in sorted({n.url, n.password, *secrets, *(v for _, v in n.headers)}, key=len,
                         reverse=True):  # fmt: skip
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def body(notifier: NotifierConfig, notice: Notice) -> bytes:
    """The webhook's JSON body: Slack's ``{"text": …}``, or the template's rendering (which
    must be JSON)."""
    if not notifier.template:
        return json.dumps({"text": notice.text}).encode()
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    env.filters["json"] = lambda v: json.dumps(v)
    try:
        rendered = env.from_string(notifier.template).render(**notice.fields())
    except Exception as exc:  # noqa: BLE001 - a template's error is the notifier's
        raise NotifyError(
            f"notifier {notifier.name!r}: the template failed: {type(exc).__name__}: {exc}"
        ) from None
    try:
        json.loads(rendered)
    except ValueError as exc:
        raise NotifyError(
            f"notifier {notifier.name!r}: the template did not render JSON ({exc}); quote "
            "values with the json filter: {{ text | json }}"
        ) from None
    return rendered.encode()


def _webhook(n: NotifierConfig, notice: Notice) -> None:
    import requests

    data = body(n, notice)
    headers = {"Content-Type": "application/json", **dict(n.headers)}
    with requests.Session() as s:
        s.trust_env = False  # no .netrc, no proxies from the environment
        try:
            r = s.post(n.url, data=data, headers=headers, timeout=n.timeout, allow_redirects=False)
        except requests.RequestException as exc:
            raise NotifyError(
                f"notifier {n.name!r}: the webhook could not be reached ({type(exc).__name__})"
            ) from None
        if r.is_redirect or not 200 <= r.status_code < 300:
            why = "a redirect, not followed" if r.is_redirect else f"HTTP {r.status_code}"
            raise NotifyError(f"notifier {n.name!r}: the webhook answered {why}")


def _email(n: NotifierConfig, notice: Notice) -> None:
    import smtplib
    import ssl
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["Subject"] = notice.title
    msg["From"] = n.sender
    msg["To"] = ", ".join(n.to)
    msg.set_content(notice.text + "\n")
    try:
        with smtplib.SMTP(n.host, n.port, timeout=n.timeout) as smtp:
            if n.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if n.username:
                smtp.login(n.username, n.password)
            smtp.send_message(msg)
    except (smtplib.SMTPException, OSError) as exc:
        raise NotifyError(
            f"notifier {n.name!r}: SMTP {n.host}:{n.port}: {type(exc).__name__}: {exc}"
        ) from None
