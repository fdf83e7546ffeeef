"""Answer rules: what an ERP's answer means, declared by paths into it.

Many ERPs do not say "no" with a status code: JSON-RPC answers an application error as 200 with
an ``error`` member, SOAP with a Fault. A stage that calls a connector (query_check, write)
declares, under ``answer:``, which answers are which:

=====================  ========================================================================
rule                   the answer means
=====================  ========================================================================
``refused``            the ERP said no and created nothing: a resend is safe (the order fails,
                       and is retried after its backoff; quarantined after ``max_attempts``)
``session_expired``    the session is gone: log in again, once, and repeat the call
``may_have_landed``    the ERP may have the order: a write is never blindly sent again (the
                       order is settled by query_check); a query is retried
``ok``                 (optional) a success; with it, an answer that matches no rule is not a
                       success either: a write's may have landed, a query's is an error
=====================  ========================================================================

Each rule is a path (JMESPath, or JSONPath starting with ``$``); it matches when its value is
truthy (not null, false, "", [] or {}): ``refused: error``, ``session_expired: "error.code ==
`100`"``. They are tried in the order above. ``message`` is the path to the ERP's own words
(they go to the order's error, ``orders show`` and the run summary); ``id_path`` the path to
the order's ERP reference (attribute ``erp.id``; check_response's default reference).
``preset: jsonrpc`` gives ``refused: error`` and JSON-RPC's message paths.

A SOAP Fault (1.1 or 1.2) is always an error answer: one the ERP puts on the client
(Client/Sender) is refused, any other may have landed, unless a rule says otherwise. Without
``answer:``, the status code decides, as it always has. Non-2xx answers are read by the rules
too when their body can be read (a SOAP 1.1 Fault comes with a 500); when no rule matches, the
status code decides. A status the stage lists itself (query_check's ``not_found_status_codes``
and ``failure_status_codes``) is decided by the list, whatever its body says.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from integrator.config.checks import Options
from integrator.mapping.paths import path_problem, select

if TYPE_CHECKING:
    from integrator.connectors.xmlbody import SoapFault

__all__ = ["AnswerRules", "Outcome", "RuleUnreadable", "Verdict", "read_rules"]

KEYS = ("ok", "refused", "session_expired", "may_have_landed", "message", "id_path", "preset")
DEFAULT_MESSAGE = "error.data.message || error.message || error_description || message || detail"

PRESETS: dict[str, dict[str, str]] = {
    "jsonrpc": {
        "refused": "error",
        "message": "error.data.message || error.message || error",
    },
}


class Outcome(enum.Enum):
    """What an answer means."""

    OK = "ok"
    REFUSED = "refused"
    SESSION_EXPIRED = "session_expired"
    MAY_HAVE_LANDED = "may_have_landed"


@dataclass(frozen=True)
class Verdict:
    """An answer's outcome, with the ERP's message when it gave one."""

    outcome: Outcome
    message: str = ""
    rule: str = ""  # the rule that decided (shown in messages): "refused: error", "SOAP Fault"
    unreadable: bool = False  # a rule could not be read on the answer (``rule`` says which)


@dataclass(frozen=True)
class AnswerRules:
    """A stage's ``answer:`` rules (paths), and where they were written (for messages)."""

    ok: str = ""
    refused: str = ""
    session_expired: str = ""
    may_have_landed: str = ""
    message: str = DEFAULT_MESSAGE
    id_path: str = ""
    declared: bool = False  # False: no ``answer:``; only SOAP Faults are read

    def judge(self, answer: Any, status: int) -> Verdict | None:
        """The verdict on ``answer`` (status ``status``), or None when the rules say nothing
        (the status code decides).

        A rule that cannot be read on this answer (``contains(error.message, 'x')`` where
        ``error`` is absent: JMESPath calls that a type error) is the flow's error, not a
        verdict of the ERP: a later rule that matches decides; else, on a 2xx answer, it may
        have landed, with the rule and the reason (a write is never sent again blindly, nor
        recorded sent on a guess); on any other, the status code decides."""
        fault = _soap_fault(answer)
        unreadable: RuleUnreadable | None = None
        for outcome, key, path in (
            (Outcome.SESSION_EXPIRED, "session_expired", self.session_expired),
            (Outcome.REFUSED, "refused", self.refused),
            (Outcome.MAY_HAVE_LANDED, "may_have_landed", self.may_have_landed),
        ):
            try:
                matched = bool(path) and _truthy(_read(key, path, answer))
            except RuleUnreadable as exc:
                unreadable = unreadable or exc
                continue
            if matched:
                return Verdict(outcome, self._message(answer, fault), f"{outcome.value}: {path}")
        if fault is not None:
            outcome = Outcome.REFUSED if fault.sender_side else Outcome.MAY_HAVE_LANDED
            return Verdict(outcome, fault.message, f"SOAP {fault.version} Fault ({fault.code})")
        if not 200 <= status < 300:
            return None
        if unreadable is None and self.ok:
            try:
                if not _truthy(_read("ok", self.ok, answer)):
                    return Verdict(
                        Outcome.MAY_HAVE_LANDED, self._message(answer, None), f"not ok: {self.ok}"
                    )
            except RuleUnreadable as exc:
                unreadable = exc
        if unreadable is not None:
            return Verdict(Outcome.MAY_HAVE_LANDED, "", str(unreadable), unreadable=True)
        return Verdict(Outcome.OK) if self.declared else None

    def _message(self, answer: Any, fault: SoapFault | None) -> str:
        if fault is not None and fault.message:
            return fault.message
        try:
            found = select(self.message, answer) if self.message else None
        except Exception:  # noqa: BLE001 - a message path meeting an odd answer: no message
            found = None
        if found in (None, "", [], {}):
            return ""
        return str(found)

    def reference(self, answer: Any) -> str | None:
        """The order's ERP reference by ``id_path``, or None; a RuleUnreadable when the path
        cannot be read on this answer."""
        if not self.id_path:
            return None
        found = _read("id_path", self.id_path, answer)
        return None if found in (None, "", [], {}) else str(found)


NO_RULES = AnswerRules()


class RuleUnreadable(ValueError):
    """An answer rule (or ``id_path``) that cannot be read on an answer: its text names the
    rule, the reason and the fix."""


def _read(key: str, path: str, answer: Any) -> Any:
    """``select(path, answer)``; a RuleUnreadable naming ``key`` when it cannot run on it."""
    try:
        return select(path, answer)
    except Exception as exc:  # noqa: BLE001 - JMESPath's type errors, JSONPath's filters
        reason = _reason(exc)
        raise RuleUnreadable(
            f"the answer rule {key}: {path} cannot be read on this answer ({reason}); fix "
            "it so that it reads any answer the ERP gives (a guard: `error && "
            "contains(error.message, 'x')`)"
        ) from None


def _truthy(value: Any) -> bool:
    return value not in (None, False, "", [], {})


def _soap_fault(answer: Any) -> SoapFault | None:
    if not isinstance(answer, dict) or "Envelope" not in answer:
        return None
    from integrator.connectors.xmlbody import soap_fault  # only for XML answers

    return soap_fault(answer)


def read_rules(opts: Options, key: str = "answer") -> AnswerRules:
    """A stage's ``answer:`` option: a mapping of rules, or a preset's name."""
    raw = opts.data.get(key)
    if raw is None:
        return NO_RULES
    if isinstance(raw, str):
        raw = {"preset": raw}
    o = Options(raw, opts.doc, opts.sub(key), opts.issues, set(KEYS))
    preset = o.get(
        "preset",
        str,
        "",
        check=lambda v: None if v in PRESETS else f"expected one of {', '.join(sorted(PRESETS))}",
    )
    fields: dict[str, Any] = {"declared": True, **PRESETS.get(preset, {})}
    for k in KEYS:
        if k != "preset" and o.data.get(k) is not None:
            fields[k] = o.get(k, str, "", check=path_problem)
    return replace(NO_RULES, **fields)


def _reason(exc: Exception) -> str:
    """Why a path failed, without the answer's values (a login's answer holds its key)."""
    import jmespath.exceptions

    if isinstance(exc, jmespath.exceptions.JMESPathTypeError):
        expected = " or ".join(exc.expected_types)
        return f"{exc.function_name}() takes {expected}, and got {exc.actual_type}"
    if isinstance(exc, jmespath.exceptions.JMESPathError):
        return type(exc).__name__
    return f"{type(exc).__name__} in the path"
