"""Trace mode (``test-flow``, the golden tests) is the real runner calling nothing: on every
shipped flow, the Omnium project's included, no sandbox server sees a single call."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

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


ORDER = ROOT / "flows" / "tests" / "order_flow" / "with_discount.order.json"


def test_test_flow_shows_every_attribute_and_where_it_failed(tmp_path: Path) -> None:
    """Every attribute, grouped (log. and the others), at the end and when a stage fails:
    the failed stage is named, with the attributes up to there."""
    project = make_project(tmp_path, {})
    r = project.run("test-flow", "order_flow", "--order", str(ORDER))
    assert r.code == 0, r.out + r.err
    out = json.loads(r.out)
    assert out["attributes"]["log"] == {"log.lines": "3", "log.gross_amount": "2879.40"}
    assert out["attributes"]["other"]["query_check.found"] == "false"
    assert out["attributes"]["other"]["erp.reference"] == "ERP-TEST-0000001"
    assert out["failure"] is None and out["error"] is None
    script = project.root / "scripts" / "enrich_order.py"
    script.write_text(
        script.read_text().replace(
            "    return data",
            "    attributes['customer.segment'] = 'gold'\n    return data['missing']",
        )
    )
    r = project.run("test-flow", "order_flow", "--order", str(ORDER))
    assert r.code == 1
    out = json.loads(r.out)
    failure = out["failure"]
    assert failure["stage"] == "script" and "KeyError" in failure["error"]
    at = failure["attributes"]  # what the stages set up to the failure, script's own included
    assert at["other"]["customer.segment"] == "gold"
    assert at["other"]["query_check.found"] == "false"
    assert at["log"]["log.lines"] == "3" and "KeyError" in at["log"]["log.script.error"]
    assert "write.status" not in at["other"]  # nothing after the failed stage
    assert out["attributes"]["other"]["failure.stage"] == "script"  # the end: the failure noted
    assert "flow failed: script: script error: KeyError" in r.err
    assert "failed stage: script" in r.err and "Traceback" not in r.err


def test_test_flow_names_the_stage_a_bug_stopped(tmp_path: Path) -> None:
    """A stage that raises something other than an order's error (a bug in a custom stage):
    the trace still names it and shows the attributes up to there."""
    project = make_project(tmp_path, {})
    (project.root / "mystages.py").write_text(
        "from integrator.pipeline.stage import Stage\n\n\n"
        "class Boom(Stage):\n"
        "    name = 'boom'\n\n"
        "    def process(self, ex):\n"
        "        ex.attributes['boom.seen'] = 'yes'\n"
        "        raise ValueError('a bug in boom')\n"
    )
    project.edit_flow("  - mapping:\n", "  - mystages:Boom\n  - mapping:\n")
    r = project.run("test-flow", "order_flow", "--order", str(ORDER))
    assert r.code == 1, r.out + r.err
    out = json.loads(r.out)
    assert out["failure"]["stage"] == "boom"
    assert "a bug in boom" in out["failure"]["error"]
    assert out["failure"]["attributes"]["log"]["log.lines"] == "3"
    assert out["failure"]["attributes"]["other"]["boom.seen"] == "yes"
    assert [s["stage"] for s in out["stages"]][-1] == "script"  # the last one that finished
    assert "failed stage: boom" in r.err


def test_test_flow_takes_the_recorded_status(tmp_path: Path) -> None:
    """--status, or a recording {"status": ..., "body": ...}: write.status shows it; a status
    that is not 2xx fails the write as the connector would (refused, or may have landed)."""
    project = make_project(tmp_path, {})

    def trace(*args: str) -> tuple[int, dict[str, Any], str]:
        r = project.run("test-flow", "order_flow", "--order", str(ORDER), *args)
        return r.code, json.loads(r.out) if r.out else {}, r.err

    code, out, _ = trace("--status", "202")
    assert code == 0 and out["attributes"]["other"]["write.status"] == "202"
    answer = {"id": "ERP-77", "order_number": "202611000007", "lines": []}
    rec = tmp_path / "recorded.json"
    rec.write_text(json.dumps({"status": 200, "body": answer}))
    code, out, _ = trace("--response", str(rec))
    assert code == 0, out
    assert out["erp_response"] == answer
    assert out["attributes"]["other"]["write.status"] == "200"
    assert out["attributes"]["other"]["erp.reference"] == "ERP-77"
    code, out, _ = trace("--response", str(rec), "--status", "201")  # the option wins
    assert out["attributes"]["other"]["write.status"] == "201"
    # an answer that only looks like a recording (more keys, or a status that is no code)
    for body in ({"status": "ok", "body": {"id": "X"}}, {**answer, "status": 200, "body": ""}):
        rec.write_text(json.dumps(body))
        code, out, err = trace("--response", str(rec))
        assert out["erp_response"] == body, err
        assert out["attributes"]["other"]["write.status"] == "201"
    # a refusal: nothing was created
    rec.write_text(json.dumps({"status": 422, "body": {"detail": "unknown product SAL-310"}}))
    code, out, err = trace("--response", str(rec))
    assert code == 1
    assert out["failure"]["stage"] == "write" and out["state"] == "failed"
    assert "answered 422" in out["error"] and "unknown product SAL-310" in out["error"]
    assert "write.status" not in out["attributes"]["other"]  # as in a run: no answer taken
    assert out["erp_request"]["order_number"] == "202611000007"  # what was sent is shown
    # a 503 after the request went out: the ERP may have the order
    code, out, _ = trace("--status", "503")
    assert code == 1 and out["state"] == "sending" and "answered 503" in out["error"]
    r = project.run("test-flow", "order_flow", "--order", str(ORDER), "--status", "99")
    assert r.code == 2 and "--status" in r.err


def test_test_flow_reads_a_recorded_answer_by_the_write_s_rules(tmp_path: Path) -> None:
    """A JSON-RPC error comes as 200 + error: the write's answer rules read the recording as
    the connector reads a real answer, so the trace fails the write (refused) instead of
    showing a success."""
    project = make_project(tmp_path, {})
    project.edit_flow("      method: POST\n  - check_response", "      method: POST\n"
                      "      answer: jsonrpc\n  - check_response")  # fmt: skip
    rec = tmp_path / "rpc-error.json"
    rec.write_text(
        json.dumps(
            {
                "status": 200,
                "body": {"jsonrpc": "2.0", "id": 7, "error": {"message": "unknown product X-1"}},
            }
        )
    )
    r = project.run("test-flow", "order_flow", "--order", str(ORDER), "--response", str(rec))
    assert r.code == 1, r.out + r.err
    out = json.loads(r.out)
    assert out["failure"]["stage"] == "write" and out["state"] == "failed"  # refused: resend
    assert "the ERP said no" in out["error"] and "unknown product X-1" in out["error"]
    ok = tmp_path / "rpc-ok.json"
    ok.write_text(json.dumps({"jsonrpc": "2.0", "id": 7, "result": 42}))
    r = project.run("test-flow", "order_flow", "--order", str(ORDER), "--response", str(ok))
    out = json.loads(r.out)
    assert out["erp_response"] == {"jsonrpc": "2.0", "id": 7, "result": 42}
    assert out["attributes"]["other"]["write.status"] == "201"
    assert (out["failure"] or {}).get("stage") != "write"  # the write took it
