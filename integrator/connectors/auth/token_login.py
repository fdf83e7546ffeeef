"""``TokenLogin``: a login call whose answer gives the headers of every later call.

Omnitron: ``POST auth/login/`` with ``{username, password}`` → ``key`` → ``Token …``
(``TokenPath``, ``Header``, ``HeaderFormat``). For other ERPs, ``Body`` and ``Headers`` are
templates of the expression language (:mod:`integrator.mapping.expr`): the body reads
``connector`` (its Username, Password, Properties) and ``vars`` (config.yaml's constants); each
header reads ``login`` (the answer, JSON or XML) too:

.. code-block:: yaml

    TokenLogin:
      Path: /jsonrpc
      Body: {jsonrpc: "2.0", method: call, params: {service: common, method: session_login,
             args: ["${vars.database}", "${connector.Username}", "${connector.Password}"]}}
      Refused: error
      Headers:
        Authorization: "Session ${base64(concat(connector.Username, ':', login.result[0],
                        ':', login.result[1]))}"

``Headers: {}`` sends no header: the calls' own bodies carry what the login gave
(``${login.result}``, Odoo's uid). ``ContentType``: the body's type (``json``, ``xml``,
``form`` or a media type; a text ``Body`` is an XML template, its values XML-escaped).
``Refused``: a path into the answer that, when truthy, means the login was refused (default
``error``, JSON-RPC's; a SOAP Fault always is). ``ExpiresPath``: a lifetime in seconds; none:
valid until a call answers 401 or its answer rules say the session expired. The older
``{username}``/``{password}`` placeholders of a ``Body`` still work.

The strings of the login's answer of 8 to 4,096 characters (the first 64), and every header
it makes, are secrets from then on: masked wherever they could be shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from integrator.config.checks import Options
from integrator.connectors.auth import (
    Auth,
    AuthConfig,
    Kind,
    LoginAuth,
    LoginRefused,
    Send,
    Url,
    credentials_used,
    fill,
    raw_body,
    seconds,
)

if TYPE_CHECKING:
    from integrator.config.model import ConnectorConfig
    from integrator.connectors.redact import Redactor

__all__ = ["KIND", "TokenLogin", "TokenLoginAuth"]

OPTION = "TokenLogin"
_KEYS = {
    "Path",
    "TokenPath",
    "Header",
    "HeaderFormat",
    "Method",
    "Body",
    "ContentType",
    "Headers",
    "Refused",
    "ExpiresPath",
}
_MIN_SECRET = 8  # characters: a shorter string of the answer (a uid, "ok") is not masked
_MAX_LEARNT = 64  # strings of one login answer taught to the redactor


@dataclass(frozen=True)
class TokenLogin(AuthConfig):
    """A login call whose answer carries the token (Omnitron: ``POST auth/login/`` → ``key``)."""

    path: str
    token_path: str = "key"
    header: str = "Authorization"
    header_format: str = "Token {token}"
    method: str = "POST"
    body: Any = None  # a JSON or text template; default {username, password}
    expires_path: str = ""  # JMESPath to a lifetime in seconds; none: valid until a 401
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] | None = None  # templates; None: Header/HeaderFormat
    refused: str = "error"  # a path: truthy means the login was refused

    def build(self, connector: ConnectorConfig, send: Send, redactor: Redactor, url: Url) -> Auth:
        """A login on first use, renewed on expiry or on one 401."""
        return TokenLoginAuth(connector, self, send, redactor, url(self.path))


def read(o: Options, raw: Any) -> TokenLogin | None:
    """``TokenLogin``, checked; None when the connector has none."""
    from integrator.mapping.expr import check_expression, placeholders
    from integrator.mapping.paths import path_problem
    from integrator.stages.request import CONTENT_TYPES

    if o.data.get(OPTION) is None:
        return None
    t = Options(o.data[OPTION], o.doc, o.sub(OPTION), o.issues, _KEYS)
    headers = t.data.get("Headers")
    if headers is not None and not isinstance(headers, dict):
        t.error("Headers", "expected a mapping of header: template")
        headers = None
    ctype = t.get("ContentType", str, "json")
    tl = TokenLogin(
        path=t.get("Path", str, "", required=True),
        token_path=t.get("TokenPath", str, "key"),
        header=t.get("Header", str, "Authorization"),
        header_format=t.get("HeaderFormat", str, "Token {token}"),
        method=t.get("Method", str, "POST").upper(),
        body=t.data.get("Body"),
        expires_path=t.get("ExpiresPath", str, ""),
        content_type=CONTENT_TYPES.get(ctype, ctype),
        headers=None if headers is None else tuple((str(k), str(v)) for k, v in headers.items()),
        refused=t.get("Refused", str, "error"),
    )
    if headers is None and "{token}" not in tl.header_format:
        t.error("HeaderFormat", "must contain {token}, e.g. 'Token {token}'")
    if tl.body is not None and not isinstance(tl.body, dict | list | str):
        t.error("Body", "expected a JSON template, e.g. {login: '${connector.Username}'}, or text")
    if isinstance(tl.body, str) and "/" not in tl.content_type:
        t.error("ContentType", "a text Body needs its type: xml or a media type such as text/xml")
    for key in ("Refused", "ExpiresPath", "TokenPath"):
        value = t.data.get(key)
        problem = path_problem(value) if isinstance(value, str) and value else None
        if problem is not None:
            t.error(key, problem)
    for key, node, login in (("Body", tl.body, False), ("Headers", headers, True)):
        for text in _strings(node):
            for ph in placeholders(text):
                problem = check_expression(ph.text, login=login)
                if problem is not None:
                    where = "the body is sent before there is an answer" if not login else ""
                    t.error(key, f"${{{ph.text}}}: {problem}" + (f" ({where})" if where else ""))
    credentials_used(o, t, tl.body, raw_body(raw, OPTION))
    return tl


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node] if "${" in node else []
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


class TokenLoginAuth(LoginAuth):
    """A login call returning a token (Omnitron), or a JSON-RPC session id, put in a header."""

    def __init__(
        self, cfg: ConnectorConfig, tl: TokenLogin, send: Send, redactor: Redactor, url: str
    ) -> None:
        super().__init__(cfg, send, redactor, url)
        self.tl = tl

    def _login(self) -> tuple[dict[str, str], float | None]:
        import jmespath

        from integrator.connectors.bodies import answer_of
        from integrator.connectors.xmlbody import encode_body, is_xml_type, xml_text
        from integrator.errors import UnreadableAnswer
        from integrator.mapping.expr import Scope, TemplateError, render, render_value

        tl, cfg = self.tl, self.cfg
        what = f"{tl.method} {cfg.name}:{tl.path}"
        roots: dict[str, Any] = {"connector": cfg.fields(), "vars": cfg.vars}
        ctype = tl.content_type
        try:
            if tl.body is None:
                body: Any = self._credentials()
            elif isinstance(tl.body, str):
                as_text = xml_text if is_xml_type(tl.content_type) else None
                text = render(fill(tl.body, self._credentials()), Scope(None, {}, roots),
                              as_text=as_text)  # fmt: skip
                body, ctype = encode_body(text, tl.content_type, what)
            else:
                body = render_value(fill(tl.body, self._credentials()), Scope(None, {}, roots))
                if tl.content_type != "application/json":
                    body, ctype = encode_body(body, tl.content_type, what)
        except TemplateError as exc:
            raise LoginRefused(f"login {what}: the Body cannot be made: {exc}") from None
        resp = self.send(tl.method, self.url, body, None, ctype)
        if not resp.ok and not resp.content:
            raise self._refused(what, resp, "Username and Password")
        try:
            answer = answer_of(resp, what, cfg.name)
        except UnreadableAnswer as exc:
            if not resp.ok:
                raise self._refused(what, resp, "Username and Password") from None
            raise LoginRefused(f"login {what}: {exc}") from None
        refusal = self._refusal(answer)
        if refusal is not None:
            raise LoginRefused(
                f"login {what} refused ({self.redactor.scrub(refusal)}): check the Username "
                f"and Password of connector {cfg.name!r}"
                + ("" if refusal.startswith("the ERP says") else ", and its Refused rule")
            )
        if not resp.ok:
            raise self._refused(what, resp, "Username and Password")
        self._keep(*_long_strings(answer))
        self.answer = answer
        try:
            ttl = jmespath.search(tl.expires_path, answer) if tl.expires_path else None
        except jmespath.exceptions.JMESPathError:  # a lifetime it cannot read: until rejected
            ttl = None
        if tl.headers is not None:
            scope = Scope(None, {}, {**roots, "login": answer})
            try:
                headers = {k: render(v, scope) for k, v in tl.headers}
            except TemplateError as exc:
                said = self.redactor.scrub(str(exc))
                raise LoginRefused(
                    f"login {what}: its answer cannot make the Headers: {said}"
                ) from None
            self._keep(*headers.values())
            return headers, seconds(ttl)
        token = jmespath.search(tl.token_path, answer)
        if not isinstance(token, str | int) or token in ("", None) or isinstance(token, bool):
            raise LoginRefused(f"login {what}: no token at {tl.token_path!r} in the answer")
        token = str(token)
        self._keep(token)
        return {tl.header: tl.header_format.format(token=token)}, seconds(ttl)

    def _refusal(self, answer: Any) -> str | None:
        """Why the answer says the login was refused (the ERP's words, else the rule that
        matched), or None."""
        import jmespath

        from integrator.connectors.answers import AnswerRules

        rules = AnswerRules(refused=self.tl.refused, declared=True)
        verdict = rules.judge(answer, 200)
        if verdict is None or verdict.outcome.value == "ok":
            return None
        if verdict.unreadable:  # the flow's error, not the ERP's word: say which rule
            raise LoginRefused(
                f"login {self.tl.method} {self.cfg.name}:{self.tl.path}: TokenLogin's Refused "
                f"cannot tell whether it was refused: {verdict.rule}"
            )
        said = verdict.message or jmespath.search("error.data.message || error.message", answer)
        if said:
            return f"the ERP says: {said}"
        if verdict.rule.startswith("SOAP"):
            return f"a {verdict.rule}"
        # Only the rule matched: the ERP gave no reason (a rule matching a good answer, too)
        return f"its answer matches TokenLogin's Refused: {self.tl.refused}, and gives no reason"


def _long_strings(node: Any, found: list[str] | None = None) -> list[str]:
    """The strings of a login answer that may be credentials: 8 to 4,096 characters, at most
    64 of them (a token, a session key; a login answer is small: a huge one is not learnt
    whole, so masking every later message stays cheap)."""
    found = [] if found is None else found
    if len(found) >= _MAX_LEARNT:
        return found
    if isinstance(node, str):
        if _MIN_SECRET <= len(node) <= 4096:
            found.append(node)
    elif isinstance(node, dict):
        for v in node.values():
            _long_strings(v, found)
    elif isinstance(node, list):
        for v in node:
            _long_strings(v, found)
    return found


KIND = Kind(
    name="token_login",
    selector=OPTION,
    keys=frozenset({OPTION}),
    secrets=frozenset(),
    read=read,
)
