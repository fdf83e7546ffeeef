"""Every command, and a daemon run, with secrets in the config and in the payloads: none of
them may appear in any output, log file, the state store or what reaches the ERP."""

from __future__ import annotations

import json
import sqlite3

from conftest import Project, fault_rule, faults
from test_daemon import daemon, every, wait_for
from test_order_flow import unsent

from integrator.sandbox import Sandbox
from integrator.sandbox.seed import CHANNEL_SECRET

API_KEY = "erp-api-key-91c0d77e"  # a header secret, from the environment


def test_no_command_leaks_a_secret(project: Project, sandbox: Sandbox) -> None:
    numbers = unsent(sandbox)
    project.env["ERP_API_KEY"] = API_KEY
    cfg = project.root / "config.yaml"
    cfg.write_text(
        cfg.read_text().replace(
            "    CustomHeaders:\n", "    CustomHeaders:\n      X-Api-Key: ${ERP_API_KEY}\n"
        )
    )
    project.forward_channel_conf()
    secrets = [
        CHANNEL_SECRET,
        API_KEY,
        sandbox.credentials["OMNITRON_PASSWORD"],
        sandbox.credentials["ERP_TOKEN"],
    ]
    # An ERP that echoes the credentials it received in an error body.
    echo = " ".join(secrets[1:])
    fault_rule(
        sandbox.erp.url,
        action="body",
        route="create",
        status=400,
        body=json.dumps({"detail": f"bad request from {echo}"}),
        numbers=[numbers[0]],
    )
    outputs = []

    def run(*args: str) -> None:
        r = project.run(*args)
        outputs.extend([r.out, r.err])

    run("validate")
    run("flows")
    run("run-flow", "order_flow", "--dry-run", "--limit", "3")
    run("run-flow", "order_flow", "--no-progress")
    run("runs")
    run("orders", "show", numbers[0])
    run("orders", "show", numbers[1])
    run("quarantine")
    faults(sandbox.erp.url, {})
    run("replay", numbers[0])
    run("resolve", numbers[0], "--resend")
    order = project.root / "order.json"
    order.write_text(json.dumps(sandbox.omnitron.orders[1]))
    run("test-flow", "order_flow", "--order", str(order))
    run("test-flow", "--golden")
    run("test-script", "scripts/enrich_order.py", "--input", str(order))
    run("test-mapping", "flows/specs/order_to_erp.json", "--input", str(order))
    every(project)
    with daemon(project) as d:
        wait_for(lambda: d.named("run_ended"), what="a daemon run")
        assert d.stop() == 0
        outputs += d.raw
    assert project.sql("SELECT COUNT(*) FROM runs")[0][0] >= 3
    secrets += list(sandbox.omnitron.tokens)  # the login tokens handed out meanwhile
    texts = list(outputs)
    texts += [p.read_text() for p in (project.root / "logs").rglob("*") if p.is_file()]
    with sqlite3.connect(project.root / "state" / "integrator.db") as c:
        for (table,) in c.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            texts.append(json.dumps(list(c.execute(f"SELECT * FROM {table}")), default=str))
    texts += [json.dumps(o["payload"]) for o in sandbox.erp.orders.values()]
    joined = "\n".join(texts)
    assert "***" in joined  # the secrets were there, masked
    assert "bad request from" in joined  # the echoing error body was shown, scrubbed
    for secret in secrets:
        assert secret not in joined, f"a secret leaked: {secret[:4]}…"
