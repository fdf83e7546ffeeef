"""Load and validate config.yaml and flows/*.yaml: every problem at once, then freeze."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from integrator.config.checks import Options, clear_secret, header_problem
from integrator.config.interpolate import (
    MIN_SECRET,
    interpolate,
    is_secret_key,
    secret_references,
)
from integrator.config.model import (
    AppConfig,
    ConnectorConfig,
    EventSettings,
    FlowConfig,
    ReconcileSettings,
    StageSpec,
)
from integrator.config.yamlfile import YamlDoc, join_key, read_yaml
from integrator.errors import ConfigIssue, ConfigurationError
from integrator.scheduler.schedule import Schedule, parse_schedule

if TYPE_CHECKING:
    from integrator.connectors.auth import AuthConfig, Kind

__all__ = ["VAR_NAME", "flow_constants", "load_app", "load_flow", "load_flows", "read_app"]

_APP_KEYS = {
    "state",
    "logging",
    "connectors",
    "flows_dir",
    "market_groups",
    "vars",
    "notifiers",
    "console",
}
# A connector's own options; each auth kind adds those it owns (connectors/auth/<kind>.py).
_CONNECTOR_KEYS = {
    "Name",
    "ConnectorId",
    "DisplayName",
    "Host",
    "ConnectionString",
    "Timeout",
    "MaxAnswerBytes",
    "Properties",
    "CustomHeaders",
    "EnabledForMarkets",
    "DisabledForMarkets",
    "EnabledForMarketGroups",
    "DisabledForMarketGroups",
    "Retry",
    "DisableStandardErrorPolicy",
    "MaxInFlight",
    "RequestsPerSecond",
    "CircuitBreaker",
}
_FLOW_KEYS = {
    "name",
    "description",
    "source",
    "target",
    "schedule",
    "concurrency",
    "max_attempts",
    "backoff_seconds",
    "script_memory_mb",
    "settle_seconds",
    "test_mode",
    "market_path",
    "events",
    "reconcile",
    "stages",
    "renamed_from",
    "new_history",
    "vars",
    "alarms",
}
_SECRET_FIELDS = ("ConnectionString",)  # and the auth kinds' secrets


_SCHEMES = ("http", "https", "amqp", "amqps", "kafka")


def _url_check(value: str) -> str | None:
    u = urlparse(value)
    if u.scheme not in _SCHEMES or not u.netloc:
        return (
            "expected an http(s) URL such as https://erp.example.com (amqp:// for RabbitMQ, "
            "kafka://host:port for Kafka)"
        )
    return None


def _connector(
    doc: YamlDoc, raw: dict[str, Any], data: Any, key: str, issues: list[ConfigIssue]
) -> ConnectorConfig | None:
    from integrator.connectors import auth as auth_kinds  # light: no requests until a call

    kinds = auth_kinds.kinds()
    allowed = _CONNECTOR_KEYS.union(*(k.keys for k in kinds))
    o = Options(data, doc, key, issues, allowed)
    secret_keys = [*_SECRET_FIELDS, *sorted(set().union(*(k.secrets for k in kinds)))]
    for name in secret_keys:
        clear_secret(doc, raw.get(name) if isinstance(raw, dict) else None, o.sub(name), issues)
    name = o.get("Name", str, "", required=True)
    connection_string = o.get("ConnectionString", str, "")
    host = o.get("Host", str, "", required=not connection_string, check=_url_check)
    auth = _auth(o, raw, kinds)
    headers: list[tuple[str, str]] = []
    properties: list[tuple[str, str]] = []
    props = o.get("Properties", list, [])
    for i, p in enumerate(props):
        po = Options(p, doc, join_key(o.sub("Properties"), i), issues, {"Key", "Value", "KeyGroup"})
        k = po.get("Key", str, "", required=True)
        v = po.get("Value", str, "")
        if po.get("KeyGroup", str, "") == "RequestHeaders" and k:
            problem = header_problem(v)
            if problem is not None:
                po.error("Value", f"header {k!r} would hold {problem}")
            headers.append((k, v))
        elif k:
            properties.append((k, v))
    for k, v in o.get("CustomHeaders", dict, {}).items():
        if not isinstance(v, str | int | float):
            o.error("CustomHeaders", f"header {k!r}: expected a string value")
            continue
        if is_secret_key(str(k)):
            clear_secret(
                doc, raw.get("CustomHeaders", {}).get(k), o.sub(f"CustomHeaders.{k}"), issues
            )
        problem = header_problem(str(v))
        if problem is not None:
            o.error(f"CustomHeaders.{k}", f"header {k!r} would hold {problem}")
        headers.append((str(k), str(v)))

    def positive(v: float) -> str | None:
        return None if v > 0 else "expected a number of seconds above 0"

    markets = {
        f: tuple(str(m) for m in o.get(f, list, []))
        for f in (
            "EnabledForMarkets",
            "DisabledForMarkets",
            "EnabledForMarketGroups",
            "DisabledForMarketGroups",
        )
    }
    retry = Options(
        o.get("Retry", dict, {}),
        doc,
        o.sub("Retry"),
        issues,
        {"Attempts", "BaseSeconds", "CapSeconds"},
    )
    if not name or not (host or connection_string):
        return None
    return ConnectorConfig(
        retry_attempts=retry.get(
            "Attempts", int, 3, check=lambda v: None if 1 <= v <= 20 else "expected 1 to 20"
        ),
        retry_base=retry.get("BaseSeconds", float, 0.5, check=positive),
        retry_cap=retry.get("CapSeconds", float, 30.0, check=positive),
        retry_disabled=o.get("DisableStandardErrorPolicy", bool, False),
        max_in_flight=o.get(
            "MaxInFlight",
            int,
            0,
            check=lambda v: None if v >= 0 else "expected 0 (no limit) or more",
        ),
        requests_per_second=o.get(
            "RequestsPerSecond",
            float,
            0.0,
            check=lambda v: None if v >= 0 else "expected 0 (no limit) or more",
        ),
        circuit_breaker=o.get(
            "CircuitBreaker",
            int,
            5,
            check=lambda v: (
                None if v == 0 or v >= 2 else "expected 0 (off) or 2 or more orders in a row"
            ),
        ),
        name=name,
        host=host.rstrip("/"),
        connector_id=o.get("ConnectorId", str, ""),
        display_name=o.get("DisplayName", str, ""),
        auth=auth,
        username=o.get("Username", str, ""),
        password=o.get("Password", str, ""),
        connection_string=connection_string,
        timeout=o.get("Timeout", float, 30.0, check=positive),
        max_answer_bytes=o.get(
            "MaxAnswerBytes",
            int,
            16 * 1024 * 1024,
            check=lambda v: None if 1024 <= v <= 2**30 else "expected 1024 to 1073741824 bytes",
        ),
        headers=tuple(headers),
        enabled_for_markets=markets["EnabledForMarkets"],
        disabled_for_markets=markets["DisabledForMarkets"],
        enabled_for_market_groups=markets["EnabledForMarketGroups"],
        disabled_for_market_groups=markets["DisabledForMarketGroups"],
        properties=tuple(properties),
        key=key,
        doc=doc,
    )


def _auth(o: Options, raw: Any, kinds: list[Kind]) -> AuthConfig | None:
    """The connector's auth kind: the one whose option is set (one at most), else a fallback
    (basic auth when Username is set); every kind checks its options."""
    chosen = [k for k in kinds if k.selector and o.data.get(k.selector) not in (None, "")]
    if len(chosen) > 1:
        names = " and ".join(k.selector for k in chosen)
        o.error(chosen[1].selector, f"a connector has one way to log in; {names} are both set")
    configs = {k.name: k.read(o, raw) for k in kinds}
    for k in chosen:
        if configs[k.name] is not None:
            return configs[k.name]
    if chosen:
        return None
    return next((c for k in kinds if not k.selector and (c := configs[k.name]) is not None), None)


VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SECRETS_STAY = (
    "secrets stay in connectors: put it in a connector's Password, BearerToken, "
    "ClientAppSecret or ConnectionString (from ${ENV_VAR} or ${file:path}), or in a "
    "Properties or CustomHeaders entry of the connector"
)


def _strict_vars(
    doc: YamlDoc,
    data: Any,
    env: Mapping[str, str],
    issues: list[ConfigIssue],
    secrets: set[str],
    base: Path,
) -> Any:
    """``data`` with its ``vars`` interpolated strictly, for a lenient load (``need_secrets=False``:
    test-flow, the store's commands): a constant is no credential, and one left empty by an
    unset variable would change what is sent without a word."""
    if not isinstance(doc.data, dict) or "vars" not in doc.data or not isinstance(data, dict):
        return data
    found: list[ConfigIssue] = []
    part = interpolate(YamlDoc(doc.file, {"vars": doc.data["vars"]}, doc.lines), env, found,
                       secrets, base)  # fmt: skip
    issues.extend(i for i in found if i not in issues)  # the lenient pass found some already
    return {**data, "vars": part["vars"]}


def _vars(doc: YamlDoc, o: Options, secrets: Collection[str]) -> dict[str, Any]:
    """``vars:``: constants, NAME → text, a number, true/false, null, a list or a mapping.

    NAME is ``[A-Za-z_][A-Za-z0-9_]*`` (``vars.NAME`` in templates, scripts and Jolt). Secrets
    stay in connectors: a name that looks like a secret, at any depth, a value from
    ``${file:...}`` or from a variable named like a secret, and a value holding a secret this
    project knows, are refused."""
    data = o.get("vars", dict, {})
    raw = doc.data.get("vars") if isinstance(doc.data, dict) else None
    key = o.sub("vars")
    out: dict[str, Any] = {}
    for name, value in data.items():
        sub = join_key(key, str(name))
        if not isinstance(name, str) or not VAR_NAME.fullmatch(name):
            o.issues.append(
                doc.issue(
                    sub,
                    f"{name!r} is not a constant's name: use letters, digits and _, not "
                    "starting with a digit (it is written vars.NAME in templates, scripts "
                    "and Jolt specs)",
                )
            )
            continue
        if _secret_named(doc, sub, name, o.issues):
            continue
        item = raw.get(name) if isinstance(raw, dict) else None
        ok, out[name] = _constant(doc, sub, value, item, secrets, o.issues)
        if not ok:
            del out[name]
    return out


def _secret_named(doc: YamlDoc, key: str, name: str, issues: list[ConfigIssue]) -> bool:
    if not is_secret_key(name):
        return False
    issues.append(
        doc.issue(
            key,
            f"{name!r} is named like a secret; {_SECRETS_STAY}. Not a secret? Rename it "
            "(what is named with password, secret, token, api_key... is masked where shown)",
        )
    )
    return True


def _constant(
    doc: YamlDoc,
    key: str,
    value: Any,
    raw: Any,
    secrets: Collection[str],
    issues: list[ConfigIssue],
) -> tuple[bool, Any]:
    """``value`` as JSON-like data, or (False, None) with the issue recorded. ``raw``: the
    same node before interpolation (where a value came from)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        good = True
        for k, v in value.items():
            sub = join_key(key, str(k))
            if not isinstance(k, str):
                issues.append(
                    doc.issue(sub, f"key {k!r} is {type(k).__name__}, not text: quote it "
                              f"('{k}': ...), as JSON keys are text")
                )  # fmt: skip
                good = False
                continue
            if _secret_named(doc, sub, k, issues):
                good = False
                continue
            ok, out[k] = _constant(
                doc, sub, v, raw.get(k) if isinstance(raw, dict) else None, secrets, issues
            )
            good = good and ok
        return good, out
    if isinstance(value, list):
        items = [
            _constant(
                doc,
                join_key(key, i),
                v,
                raw[i] if isinstance(raw, list) and i < len(raw) else None,
                secrets,
                issues,
            )
            for i, v in enumerate(value)
        ]
        return all(ok for ok, _ in items), [v for _, v in items]
    if isinstance(value, str):
        refs = secret_references(raw) if isinstance(raw, str) else []
        if refs:
            issues.append(
                doc.issue(key, f"the value comes from {', '.join(refs)}, a secret; {_SECRETS_STAY}")
            )
            return False, None
        if "${" in value:
            issues.append(
                doc.issue(
                    key,
                    "a constant is resolved when the project is loaded, from ${ENV_VAR}, "
                    "${ENV_VAR:-default} and ${file:path}; ${_order.…} and ${vars.…} are "
                    "resolved at run time where they are written (a template), never in a "
                    "constant: write the text out, or use them in the template",
                )
            )
            return False, None
        if any(s in value for s in secrets if len(s) >= MIN_SECRET):
            issues.append(
                doc.issue(key, f"the value holds a secret of this project; {_SECRETS_STAY}")
            )
            return False, None
        return True, value
    if value is None or isinstance(value, bool | int):
        return True, value
    if isinstance(value, float):
        if math.isfinite(value):
            return True, value
        issues.append(doc.issue(key, f"expected a finite number, got {value!r}"))
        return False, None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return True, value.isoformat()  # YAML reads 2026-11-01 as a date: the same text
    issues.append(
        doc.issue(
            key,
            f"YAML reads this as {type(value).__name__}; a constant is text, a number, "
            "true/false, null, a list or a mapping: quote it to keep it as text",
        )
    )
    return False, None


def load_app(
    path: Path,
    env: Mapping[str, str] | None = None,
    *,
    need_secrets: bool = True,
    state_url: str | None = None,
) -> AppConfig:
    """Load config.yaml; raise ConfigurationError with every issue found.

    ``need_secrets=False`` tolerates unset variables (for commands that only read the store).
    ``state_url`` (the CLI's ``--state``) replaces the state store URL of config.yaml.
    """
    issues: list[ConfigIssue] = []
    app = read_app(path, issues, env, need_secrets=need_secrets, state_url=state_url)
    if app is None or [i for i in issues if i.severity == "error"]:
        raise ConfigurationError(issues)
    return app


def read_app(
    path: Path,
    issues: list[ConfigIssue],
    env: Mapping[str, str] | None = None,
    *,
    need_secrets: bool = True,
    state_url: str | None = None,
) -> AppConfig | None:
    """config.yaml as well as it can be read, its problems appended to ``issues`` (``validate``
    goes on to check the flows); None when it is not readable YAML."""
    env = os.environ if env is None else env
    doc, found = read_yaml(path)
    issues.extend(found)
    if doc is None:
        return None
    base = path.resolve().parent
    secrets: set[str] = set()
    data = interpolate(doc, env, issues, secrets, base, lenient=not need_secrets)
    if not need_secrets:
        data = _strict_vars(doc, data, env, issues, secrets, base)
    o = Options(data, doc, "", issues, _APP_KEYS)
    state = Options(o.data.get("state"), doc, "state", issues, {"url"})
    log = Options(o.data.get("logging"), doc, "logging", issues, {"level", "dir"})
    default_url = f"sqlite:///{base / 'state' / 'integrator.db'}"
    url = state_url or state.get("url", str, default_url)
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        url = f"sqlite:///{base / url[len('sqlite:///') :]}"
    level = log.get(
        "level",
        str,
        "INFO",
        check=lambda v: (
            None
            if v.upper() in {"DEBUG", "INFO", "WARNING", "ERROR"}
            else "expected one of DEBUG, INFO, WARNING, ERROR"
        ),
    ).upper()
    groups: dict[str, tuple[str, ...]] = {}
    for g, members in o.get("market_groups", dict, {}).items():
        if not isinstance(members, list):
            o.error("market_groups", f"group {g!r}: expected a list of market ids")
            continue
        groups[str(g)] = tuple(str(m) for m in members)
    connectors: list[ConnectorConfig] = []
    raw_conns = doc.data.get("connectors", []) if isinstance(doc.data, dict) else []
    seen: dict[tuple[str, str], str] = {}
    for i, c in enumerate(o.get("connectors", list, [])):
        key = join_key("connectors", i)
        raw = raw_conns[i] if isinstance(raw_conns, list) and i < len(raw_conns) else {}
        conn = _connector(doc, raw, c, key, issues)
        if conn is None:
            continue
        ident = (conn.name, conn.connector_id)
        if ident in seen:
            issues.append(
                doc.issue(
                    key,
                    f"connector {conn.name!r} is defined twice "
                    f"(also at {seen[ident]}); give one a ConnectorId",
                )
            )
        seen[ident] = key
        connectors.append(conn)
    log_dir = base / log.get("dir", str, "logs")
    flows_dir = base / o.get("flows_dir", str, "flows")
    constants = _vars(doc, o, secrets)
    from integrator.alarms.config import read_notifiers  # light

    notifiers = read_notifiers(o, doc)
    from integrator.console.users import read_console  # light

    console = read_console(o, doc)
    # A login's expressions read the project's constants (``${vars.database}``).
    connectors = [dataclasses.replace(c, vars=constants) for c in connectors]
    return AppConfig(
        vars=constants,
        market_groups=groups,
        file=str(path),
        base_dir=base,
        state_url=url,
        log_dir=log_dir,
        log_level=level,
        flows_dir=flows_dir,
        connectors=tuple(connectors),
        secrets=frozenset(secrets),
        notifiers=notifiers,
        console=console,
    )


def _stage_spec(doc: YamlDoc, entry: Any, key: str, issues: list[ConfigIssue]) -> StageSpec | None:
    if isinstance(entry, str):
        return StageSpec(entry, {}, key, doc.file)
    if isinstance(entry, dict) and len(entry) == 1:
        name, options = next(iter(entry.items()))
        if options is None:
            options = {}
        if not isinstance(options, dict):
            issues.append(
                doc.issue(
                    join_key(key, str(name)), "stage options must be a mapping of option: value"
                )
            )
            return None
        return StageSpec(str(name), options, join_key(key, str(name)), doc.file)
    issues.append(doc.issue(key, "expected a stage name, or one 'name: {options}' mapping"))
    return None


def load_flow(
    path: Path, app: AppConfig, issues: list[ConfigIssue], *, need_secrets: bool = True
) -> FlowConfig | None:
    """Parse one flow file; issues are appended; None only when it is not readable YAML.
    ``need_secrets=False``: an unset variable is tolerated (trace mode calls nothing)."""
    doc, errs = read_yaml(path)
    issues.extend(errs)
    if doc is None:
        return None
    secrets: set[str] = set()  # header tokens, webhook secrets...: the redactor learns them
    data = interpolate(doc, os.environ, issues, secrets, app.base_dir, lenient=not need_secrets)
    if not need_secrets:
        data = _strict_vars(doc, data, os.environ, issues, secrets, app.base_dir)
    o = Options(data, doc, "", issues, _FLOW_KEYS)
    names = {c.name for c in app.connectors}
    from integrator.alarms.config import read_alarms  # light

    def connector(v: str) -> str | None:
        return (
            None
            if v in names
            else (
                f"no connector named {v!r} in {app.file}; "
                f"known: {', '.join(sorted(names)) or 'none'}"
            )
        )

    stages: list[StageSpec] = []
    raw = o.get("stages", list, [], required=True)
    if not raw and "stages" in o.data:
        o.error("stages", "a flow needs at least one stage")
    for i, entry in enumerate(raw):
        spec = _stage_spec(doc, entry, join_key("stages", i), issues)
        if spec is not None:
            stages.append(spec)
    flow = FlowConfig(
        name=o.get("name", str, path.stem),
        file=doc.file,
        source=o.get("source", str, "omnitron", check=connector),
        target=o.get("target", str, "erp", check=connector),
        stages=tuple(stages),
        concurrency=o.get(
            "concurrency", int, 4, check=lambda v: None if 1 <= v <= 64 else "expected 1 to 64"
        ),
        max_attempts=o.get(
            "max_attempts", int, 5, check=lambda v: None if v >= 1 else "expected 1 or more"
        ),
        backoff_seconds=o.get(
            "backoff_seconds", float, 60.0, check=lambda v: None if v >= 0 else "expected 0 or more"
        ),
        script_memory_mb=o.get(
            "script_memory_mb",
            int,
            1024,
            check=lambda v: None if v == 0 or v >= 64 else "expected 0 (no limit) or 64 or more",
        ),
        settle_seconds=o.get(
            "settle_seconds", float, None, check=lambda v: None if v >= 0 else "expected 0 or more"
        ),
        test_mode=o.get("test_mode", bool, False),
        market_path=o.get("market_path", str, "MarketId || market || channel.market"),
        schedule=_schedule(o.get("schedule", dict, {}), doc, issues),
        description=o.get("description", str, ""),
        events=_events(o, doc),
        reconcile=_reconcile(o, doc, issues, stages),
        renamed_from=tuple(str(n) for n in _names(o.get("renamed_from", list, []))),
        new_history=o.get("new_history", bool, False),
        vars={**app.vars, **_vars(doc, o, app.secrets | secrets)},
        secrets=frozenset(secrets),
        doc=doc,
        alarms=read_alarms(o, doc, {n.name: n for n in app.notifiers}, names),
    )
    # Returned even with issues, so that its stages are checked too (all errors at once).
    return flow


def _names(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _events(o: Options, doc: YamlDoc) -> EventSettings | None:
    """``events: {secret: ${ENV}, header: X-…, id_path: objectId}``."""
    if o.data.get("events") is None:
        return None
    e = Options(o.data["events"], doc, o.sub("events"), o.issues, {"secret", "header", "id_path"})
    raw = doc.data.get("events") if isinstance(doc.data, dict) else None
    clear_secret(doc, raw.get("secret") if isinstance(raw, dict) else None, e.sub("secret"),
                  o.issues)  # fmt: skip
    secret = e.get("secret", str, "", required=True)
    if secret and len(secret) < 16:
        e.error("secret", "use a shared secret of at least 16 characters")
    return EventSettings(
        secret=secret,
        header=e.get("header", str, "X-Webhook-Secret"),
        id_path=e.get("id_path", str, "objectId"),
    )


QUERY_MODES = ("list", "query_check")


def _reconcile(
    o: Options, doc: YamlDoc, issues: list[ConfigIssue], stages: list[StageSpec]
) -> ReconcileSettings | None:
    """``reconcile: {erp_query, erp_list, erp_number, erp_amount, oms_amount, erp_since_param,
    requests_per_second, schedule}``; a flow whose ERP can be asked neither way is an issue."""
    if o.data.get("reconcile") is None:
        return None
    keys = {
        "erp_query",
        "erp_list",
        "erp_number",
        "erp_amount",
        "oms_amount",
        "erp_since_param",
        "requests_per_second",
        "schedule",
    }
    r = Options(o.data["reconcile"], doc, o.sub("reconcile"), issues, keys)
    d = ReconcileSettings()
    raw_schedule = r.get("schedule", dict, {})
    query = r.get(
        "erp_query",
        str,
        None,
        check=lambda v: None if v in QUERY_MODES else f"expected {' or '.join(QUERY_MODES)}",
    )
    settings = ReconcileSettings(
        erp_list=r.get("erp_list", str, None),
        erp_number=r.get("erp_number", str, d.erp_number),
        erp_amount=r.get("erp_amount", str, d.erp_amount, check=_path_problem),
        oms_amount=r.get("oms_amount", str, d.oms_amount),
        erp_since_param=r.get("erp_since_param", str, d.erp_since_param),
        erp_query=query if query in QUERY_MODES else None,
        requests_per_second=r.get(
            "requests_per_second",
            float,
            d.requests_per_second,
            check=lambda v: None if 0 < v <= 1000 else "expected more than 0 and at most 1000",
        ),
        schedule=_schedule(raw_schedule, doc, issues) if raw_schedule else None,
    )
    names = [s.name for s in stages]
    if any(n in ("stock_snapshot", "omnium_read", "erp_feed") for n in names):
        return settings  # not an Omnitron order flow: erp_list and erp_query do not apply
    has_check = "query_check" in names
    mode = settings.mode(names)
    if mode is None:
        o.error(
            "reconcile",
            "reconcile cannot ask the ERP: write erp_list (a GET endpoint listing the ERP's "
            "orders, paged by next links), or add a query_check stage to the flow (reconcile "
            "then asks for each order through it, at requests_per_second)",
        )
    elif mode == "list" and settings.erp_list is None:
        r.error("erp_query", "erp_query: list reads erp_list; write erp_list too")
    elif mode == "query_check" and not has_check:
        r.error(
            "erp_query",
            "erp_query: query_check asks through the flow's query_check stage, and this flow "
            "has none; add one, or write erp_list",
        )
    elif mode == "query_check" and settings.erp_list is not None:
        r.error("erp_list", "erp_list is read only with erp_query: list; remove one of them")
    return settings


def _schedule(raw: dict[str, Any], doc: YamlDoc, issues: list[ConfigIssue]) -> Schedule:
    schedule, found = parse_schedule(raw, doc.file)
    for issue in found:
        issues.append(
            ConfigIssue(
                issue.file, issue.key, issue.message, doc.line(issue.key) or doc.line("schedule")
            )
        )
    return schedule


def load_flows(
    app: AppConfig, issues: list[ConfigIssue], *, need_secrets: bool = True
) -> list[FlowConfig]:
    """Every ``*.yaml``/``*.yml`` in the flows directory (not its subdirectories)."""
    if not app.flows_dir.is_dir():
        issues.append(
            ConfigIssue(app.file, "flows_dir", f"flows directory {app.flows_dir} does not exist")
        )
        return []
    flows: list[FlowConfig] = []
    names: dict[str, str] = {}
    for path in sorted([*app.flows_dir.glob("*.yaml"), *app.flows_dir.glob("*.yml")]):
        flow = load_flow(path, app, issues, need_secrets=need_secrets)
        if flow is None:
            continue
        if flow.name in names:
            issues.append(
                ConfigIssue(
                    flow.file, "name", f"flow name {flow.name!r} also used by {names[flow.name]}"
                )
            )
            continue
        names[flow.name] = flow.file
        flows.append(flow)
    by_name = {f.name: f for f in flows}
    for flow in flows:
        _upstream(flow, by_name, issues)
    return flows


def _trigger(flow: FlowConfig) -> str | None:
    return flow.schedule.triggered_by if flow.schedule.kind == "triggered_by" else None


def _upstream(flow: FlowConfig, flows: Mapping[str, FlowConfig], issues: list[ConfigIssue]) -> None:
    """``schedule.triggered_by`` names another flow of this project, and no chain of them
    comes back to this flow (such flows would trigger each other forever, or never run)."""
    upstream = _trigger(flow)
    if upstream is None:
        return
    key = "schedule.triggered_by"
    if upstream == flow.name:
        msg = "a flow cannot be triggered by itself (it would run forever); name another flow"
    elif upstream not in flows:
        msg = (
            f"no flow named {upstream!r} in {Path(flow.file).parent}; flows: "
            f"{', '.join(sorted(flows))}. Name one of them, or this flow never runs"
        )
    else:
        chain: list[str] = [flow.name]
        step: str | None = upstream
        while step is not None and step in flows and step not in chain:
            chain.append(step)
            step = _trigger(flows[step])
        if step != flow.name:
            return
        msg = (
            f"flows trigger each other in a circle ({' → '.join([*chain, flow.name])}); "
            "give one of them a cron or every schedule"
        )
    issues.append(ConfigIssue(flow.file, key, msg, flow.doc.line(key) if flow.doc else None))


def _about_vars(key: str) -> bool:
    return key in ("", "vars") or key.startswith(("vars.", "vars["))


def flow_constants(path: Path, flow: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The constants of ``flow`` (a flow's name, or its file) in the project of config.yaml
    ``path``, for the workbench. Only what they come from is checked (the files' YAML, their
    ``vars``): a stage of the flow being fixed, or an unset connector secret, does not stop
    ``test-script --flow``. ConfigurationError for those problems or an unknown flow."""
    issues: list[ConfigIssue] = []
    app = read_app(path, issues, env)
    problems = [i for i in issues if i.severity == "error" and _about_vars(i.key)]
    if app is None or problems:
        raise ConfigurationError(problems or issues)
    found: list[ConfigIssue] = []
    flows = load_flows(app, found)
    wanted = Path(flow).resolve() if flow.endswith((".yaml", ".yml")) else None
    match = [f for f in flows if f.name == flow or Path(f.file).resolve() == wanted]
    if not match:
        names = ", ".join(sorted(f.name for f in flows)) or "none"
        unreadable = [i for i in found if i.key == "" and i.severity == "error"]
        raise ConfigurationError(
            [
                ConfigIssue(str(app.flows_dir), "", f"no flow named {flow!r}; flows: {names}"),
                *unreadable,
            ]
        )
    problems = [
        i for i in found if i.file == match[0].file and i.severity == "error" and _about_vars(i.key)
    ]
    if problems:
        raise ConfigurationError(problems)
    return match[0].vars


def _path_problem(path: str) -> str | None:
    from integrator.mapping.paths import path_problem  # only when a path is written

    return path_problem(path)
