"""The export step (Omnium's ExportOrder) and connector resolution."""

from __future__ import annotations

from typing import Any

import pytest
from support import Project, assert_exactly_once, fault_rule, stats, unsent

from integrator.config.model import ConnectorConfig
from integrator.connectors.resolve import resolve_connector
from integrator.sandbox import Sandbox


def c(name: str, cid: str, **kw: Any) -> ConnectorConfig:
    return ConnectorConfig(name=name, host="http://x.test", connector_id=cid, **kw)


CONNECTORS = (
    c("Webhook", "global"),
    c("Webhook", "no", enabled_for_markets=("NO",)),
    c("Webhook", "nordic", enabled_for_market_groups=("nordic",)),
    c("Webhook", "not-se", enabled_for_market_groups=("nordic",), disabled_for_markets=("SE",)),
    c("Erp", "erp"),
)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"connector_id": "no"}, "no"),  # an explicit id wins
        ({"market": "NO", "market_groups": ("nordic",)}, "no"),  # the market beats its group
        ({"market": "DK", "market_groups": ("nordic",)}, "nordic"),  # then the group
        ({"market": "SE", "market_groups": ("nordic",)}, "nordic"),  # disabled skips not-se
        ({"market": "TR"}, "global"),  # then the global one
        ({}, "global"),
        ({"connector_id": "missing"}, None),
    ],
)
def test_resolution_order(kwargs: dict[str, object], expected: str | None) -> None:
    found = resolve_connector(CONNECTORS, "Webhook", **kwargs)  # type: ignore[arg-type]
    assert (found.connector_id if found else None) == expected


def test_disabled_market_wins_and_names_are_case_sensitive() -> None:
    only = (c("Webhook", "se", enabled_for_markets=("SE",), disabled_for_markets=("SE",)),)
    assert resolve_connector(only, "Webhook", market="SE") is None
    assert resolve_connector(CONNECTORS, "webhook") is None


def with_exports(project: Project, *steps: str, before_write: bool = False) -> None:
    """A Webhook connector to the sandbox ERP's partner endpoint, and export steps."""
    cfg = project.root / "config.yaml"
    cfg.write_text(
        cfg.read_text() + "  - Name: Webhook\n"
        "    Host: ${ERP_URL}\n"
        "    BearerToken: ${ERP_TOKEN}\n"
        "    Properties:\n"
        "      - Key: WebhookEndpoint\n"
        "        Value: /webhooks/partner/\n"
    )
    block = "".join(f"  - export: {s}\n" for s in steps)
    anchor = "  - write:\n" if before_write else "  - post_script:\n"
    project.edit_flow(anchor, block + anchor)


def test_export_success_and_a_non_critical_failure(project: Project, sandbox: Sandbox) -> None:
    """Two steps: the first exports, the second's exporter is missing (StopOnError false)."""
    numbers = unsent(sandbox)
    with_exports(project, "{Connector: Webhook}", "{Connector: Fulfilment}")
    v = project.run("validate")
    assert v.code == 0 and "no exporter named 'Fulfilment'" in v.out
    r = project.run("run-flow", "order_flow", "--no-progress")
    assert r.code == 0, r.out + r.err
    assert_exactly_once(sandbox, numbers)
    received = sandbox.erp.webhooks["partner"]
    assert sorted(b["number"] for b in received) == sorted(numbers)
    assert all("***" in str(b["channel"]["conf"]) for b in received)  # masked, as everywhere
    assert len(project.events("Exported")) == len(numbers)
    warnings = project.events("OrderExportError")
    assert len(warnings) == len(numbers)
    assert all("exporter not found: 'Fulfilment'" in w for w in warnings)


@pytest.mark.parametrize("fails", [False, True])
@pytest.mark.parametrize("stop_on_error", [False, True])
def test_stop_on_error_by_outcome(
    project: Project, sandbox: Sandbox, stop_on_error: bool, fails: bool
) -> None:
    """Omnium's four cases: success goes on either way (Exported); a failure is a warning
    that goes on (false) or an error that stops the order with ErrorStatus (true)."""
    numbers = unsent(sandbox)
    bad = numbers[0]
    with_exports(
        project,
        f"{{Connector: Webhook, StopOnError: {str(stop_on_error).lower()}, "
        "ErrorStatus: ExportFailed}",
        before_write=True,
    )
    if fails:
        fault_rule(sandbox.erp.url, action="status", route="webhook", status=400, numbers=[bad])
    r = project.run("run-flow", "order_flow", "--no-progress")
    failures = project.events("OrderExportError")
    if not fails:
        assert r.code == 0 and not failures
        assert_exactly_once(sandbox, numbers)
        assert len(project.events("Exported")) == len(numbers)
        assert stats(sandbox.erp.url)["webhooks"]["partner"] == len(numbers)
        return
    (message,) = failures
    if stop_on_error:
        assert r.code == 1 and project.state(bad) == "failed"
        assert bad not in sandbox.erp.received  # the flow stopped for that order
        assert message.startswith("error:") and "status ExportFailed" in message
        assert "ExportFailed" in project.run("orders", "show", bad).out
    else:
        assert r.code == 0 and project.state(bad) == "done"
        assert_exactly_once(sandbox, numbers)
        assert message.startswith("warning:")
    assert stats(sandbox.erp.url)["webhooks"]["partner"] == len(numbers) - 1


def test_test_mode_skips_exports(project: Project, sandbox: Sandbox) -> None:
    with_exports(project, "{Connector: Webhook, StopOnError: true}")
    project.edit_flow("max_attempts: 5", "max_attempts: 5\ntest_mode: true")
    r = project.run("run-flow", "order_flow", "--no-progress")
    assert r.code == 0, r.out + r.err
    assert "partner" not in sandbox.erp.webhooks
    assert all(m.endswith("skipped (test mode)") for m in project.events("Exported"))
