"""Frozen configuration objects: the app (config.yaml), its connectors, and flows."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from integrator.config.yamlfile import YamlDoc, join_key
from integrator.errors import ConfigIssue
from integrator.scheduler.schedule import Schedule

if TYPE_CHECKING:
    from integrator.alarms.config import AlarmSpec, NotifierConfig
    from integrator.connectors.auth import AuthConfig
    from integrator.console.users import ConsoleConfig

__all__ = [
    "AppConfig",
    "ConnectorConfig",
    "EventSettings",
    "FlowConfig",
    "ReconcileSettings",
    "StageSpec",
]


@dataclass(frozen=True)
class ConnectorConfig:
    """A named connector in the Omnium model."""

    name: str
    host: str
    connector_id: str = ""
    display_name: str = ""
    auth: AuthConfig | None = None  # the auth kind's config (connectors/auth/<kind>.py)
    username: str = ""  # Username/Password: basic auth, a login's credentials, an exporter's
    password: str = ""
    connection_string: str = ""  # Azure Storage Queue / Service Bus (a secret)
    timeout: float = 30.0  # seconds a whole call may take: connect, headers and body
    max_answer_bytes: int = 16 * 1024 * 1024  # an answer's body, on the wire and inflated
    headers: tuple[tuple[str, str], ...] = ()
    enabled_for_markets: tuple[str, ...] = ()
    disabled_for_markets: tuple[str, ...] = ()
    enabled_for_market_groups: tuple[str, ...] = ()
    disabled_for_market_groups: tuple[str, ...] = ()
    properties: tuple[tuple[str, str], ...] = ()  # Properties outside KeyGroup RequestHeaders
    retry_attempts: int = 3  # tries per request, the first included
    retry_base: float = 0.5  # seconds; doubled per attempt, with full jitter
    retry_cap: float = 30.0  # the longest wait between tries (and the longest Retry-After)
    retry_disabled: bool = False  # Omnium's "Disable Standard Error Policy"
    max_in_flight: int = 0  # requests at a time to this host, across flows (0: no limit)
    requests_per_second: float = 0.0  # to this host, across flows (0: no limit)
    circuit_breaker: int = 5  # same failure for this many orders in a row stops a run (0: off)
    vars: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)  # project's
    key: str = field(default="", compare=False)  # where it is written: "connectors[3]"
    doc: YamlDoc | None = field(default=None, compare=False, repr=False)  # config.yaml, read

    def issue(self, option: str, message: str) -> ConfigIssue:
        """A problem with ``option`` of this connector, with its file, key and line."""
        key = join_key(self.key, option) if self.key else option
        if self.doc is None:
            return ConfigIssue("config.yaml", key, message)
        return self.doc.issue(key, message)

    def __repr__(self) -> str:  # never show credentials, even in a debugger or a traceback
        return f"ConnectorConfig(name={self.name!r}, host={self.host!r})"

    def fields(self) -> dict[str, Any]:
        """What expressions read as ``connector``: its names, Host, Username, Password and
        Properties by key (the Password is a known secret: masked wherever it is shown)."""
        return {
            "Name": self.name,
            "ConnectorId": self.connector_id,
            "Host": self.host,
            "Username": self.username,
            "Password": self.password,
            "Properties": dict(self.properties),
        }


@dataclass(frozen=True)
class EventSettings:
    """Event-subscription webhooks that run a flow for one order (``POST /events/<flow>``)."""

    secret: str  # compared in constant time with the header's value
    header: str = "X-Webhook-Secret"
    id_path: str = "objectId"  # JMESPath to the order's id in the event

    def __repr__(self) -> str:  # never show the secret
        return f"EventSettings(header={self.header!r}, id_path={self.id_path!r})"


@dataclass(frozen=True)
class ReconcileSettings:
    """How ``integrator reconcile`` compares what the OMS marked sent with what the ERP holds.

    Two ways to ask the ERP (``erp_query``): ``list`` reads every order it lists at
    ``erp_list`` (GET, paged by ``next`` links); ``query_check`` asks for each order the OMS
    shows as sent through the flow's own query_check stage, at ``requests_per_second``. Not
    written: ``list`` when ``erp_list`` is written, else ``query_check`` when the flow has one
    (:meth:`mode`).
    """

    erp_list: str | None = None  # GET, paged: {"results": [...], "next": ...}
    erp_number: str = "order_number"  # JMESPath in an ERP row
    erp_amount: str = "total"  # in an ERP row (list), or in query_check's answer (query_check)
    oms_amount: str = "amount"  # JMESPath in an OMS order summary
    erp_since_param: str = "since"
    erp_query: str | None = None  # "list", "query_check", or None: see mode()
    requests_per_second: float = 5.0  # query_check: questions per second, at most
    schedule: Schedule | None = None  # the daemon runs it and reports metrics

    def mode(self, stage_names: Iterable[str]) -> str | None:
        """How the ERP is asked for a flow with these stages: ``list``, ``query_check``, or
        None when neither is possible (no ``erp_list`` and no query_check stage)."""
        if self.erp_query is not None:
            return self.erp_query
        if self.erp_list is not None:
            return "list"
        return "query_check" if "query_check" in stage_names else None


@dataclass(frozen=True)
class StageSpec:
    """One entry of a flow's ``stages`` list, with where it was written."""

    name: str
    options: dict[str, Any]
    key: str
    file: str


@dataclass(frozen=True)
class FlowConfig:
    """One flow file (``flows/*.yaml``)."""

    name: str
    file: str
    source: str
    target: str
    stages: tuple[StageSpec, ...]
    concurrency: int = 4
    max_attempts: int = 5
    backoff_seconds: float = 60.0
    script_memory_mb: int = 1024
    settle_seconds: float | None = None  # default: twice the target connector's Timeout
    test_mode: bool = False  # export steps are skipped and reported as success
    market_path: str = "MarketId || market || channel.market"  # JMESPath: the order's market
    schedule: Schedule = field(default_factory=lambda: Schedule("manual"))
    description: str = ""
    events: EventSettings | None = None
    reconcile: ReconcileSettings | None = None
    renamed_from: tuple[str, ...] = ()  # earlier names: their history is this flow's
    new_history: bool = False  # not a rename of a flow whose history the store holds
    vars: dict[str, Any] = field(default_factory=dict)  # constants: the flow's over config.yaml's
    secrets: frozenset[str] = field(default=frozenset(), compare=False, repr=False)
    doc: YamlDoc | None = field(default=None, compare=False, repr=False)
    alarms: tuple[AlarmSpec, ...] = ()  # integrator/alarms/config.py


@dataclass(frozen=True)
class AppConfig:
    """config.yaml after validation and interpolation."""

    file: str
    base_dir: Path
    state_url: str
    log_dir: Path
    log_level: str
    flows_dir: Path
    connectors: tuple[ConnectorConfig, ...]
    secrets: frozenset[str] = frozenset()
    market_groups: dict[str, tuple[str, ...]] = field(default_factory=dict)  # group → markets
    vars: dict[str, Any] = field(default_factory=dict)  # project-wide constants
    notifiers: tuple[NotifierConfig, ...] = ()  # integrator/alarms/config.py
    console: ConsoleConfig | None = None  # integrator/console/users.py (None: no login)

    def groups_of(self, market: str) -> list[str]:
        """The market groups ``market`` belongs to, in config order."""
        return [g for g, members in self.market_groups.items() if market in members]

    def resolve_path(self, value: str) -> Path:
        """A path from a config value, relative to the directory of config.yaml."""
        p = Path(value)
        return p if p.is_absolute() else self.base_dir / p
