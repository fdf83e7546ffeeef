"""Trace mode (``test-flow``, the golden tests) is the real runner calling nothing: on every
shipped flow, the Omnium project's included, no sandbox server sees a single call."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from support import ROOT, Project, make_project, stats

from integrator.sandbox import running_sandbox


def test_test_flow_calls_nothing_on_any_shipped_flow(tmp_path: Path) -> None:
    with running_sandbox(25, omnium_port=0) as sb:
        assert sb.omnium is not None
        servers = {"omnitron": sb.omnitron.url, "erp": sb.erp.url, "omnium": sb.omnium.url}
        before = {name: stats(url) for name, url in servers.items()}
        main = make_project(tmp_path, sb.env())
        shutil.copytree(ROOT / "flows" / "omnium", tmp_path / "omnium")
        omnium = Project(tmp_path / "omnium", sb.env())
        shown = 0
        for project in (main, omnium):
            cases = sorted((project.root / "flows" / "tests").glob("*/*.order.json"))
            flows = {p.stem for p in (project.root / "flows").glob("*.yaml")}
            assert flows == {c.parent.name for c in cases}, "a shipped flow has no golden case"
            for case in cases:
                r = project.run("test-flow", case.parent.name, "--order", str(case))
                assert r.code == 0, r.out + r.err
                trace = json.loads(r.out)
                shown += sum(len(s.get("would_send", [])) for s in trace["stages"])
            golden = project.run("test-flow", "--golden")
            assert golden.code == 0 and f"{len(cases)} passed, 0 failed" in golden.out, golden.out
        after = {name: stats(url) for name, url in servers.items()}
    assert shown >= 8  # the calls the flows would make are shown...
    assert after == before  # ...and none is made


def test_planning_an_export_builds_no_client(tmp_path: Path) -> None:
    """A Kafka producer connects as soon as it is made: trace mode must not make one. The
    "broker" is a listening socket; no connection may reach its backlog."""
    import socket

    with running_sandbox(5) as sb, socket.socket() as broker:
        broker.bind(("127.0.0.1", 0))
        broker.listen(16)
        broker.setblocking(False)
        port = broker.getsockname()[1]
        project = make_project(tmp_path, sb.env())
        cfg = project.root / "config.yaml"
        cfg.write_text(
            cfg.read_text().replace(
                "connectors:\n",
                f"connectors:\n  - Name: Kafka\n    Host: kafka://127.0.0.1:{port}\n"
                "    Properties: [{Key: Topic, Value: orders}]\n",
                1,
            )
        )
        project.edit_flow("  - mark_sent\n", "  - mark_sent\n  - export: {Connector: Kafka}\n")
        order = project.root / "flows" / "tests" / "order_flow" / "with_discount.order.json"
        r = project.run("test-flow", "order_flow", "--order", str(order))
        assert r.code == 0, r.out + r.err
        export = next(s for s in json.loads(r.out)["stages"] if s["stage"] == "export")
        assert export["would_send"][0]["url"] == f"kafka://127.0.0.1:{port}"
        try:
            broker.accept()
            connected = True
        except BlockingIOError:
            connected = False
        assert not connected, "trace mode connected to the Kafka broker"
