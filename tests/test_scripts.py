"""Scripts: both runtimes in real worker processes, isolation, and the workbench commands."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import ROOT, Project, assert_exactly_once, make_project, stats, unsent
from support.scripts import ORDER, call, write

from integrator.sandbox import Sandbox
from integrator.scripting import ScriptPool, load_script


@pytest.fixture
def pool() -> Iterator[ScriptPool]:
    p = ScriptPool(size=1, memory_mb=256)
    yield p
    p.close()


def test_compat_transform_callback_as_in_the_akinon_docs(pool: ScriptPool) -> None:
    path = ROOT / "scripts" / "compat" / "enrich_order.py"
    script, _ = load_script(path, "process", "f", "k")
    assert script is not None and script.runtime == "compat"
    reply = call(pool, path, {"order.number": "1001"})
    assert reply["ok"], reply
    assert reply["result"]["gross_amount"] == "15.00"
    assert reply["attributes"] == {
        "order.number": "1001",
        "log.lines": "2",
        "log.gross_amount": "15.00",
    }


def test_compat_session_forms_and_attribute_round_trip(pool: ScriptPool, tmp_path: Path) -> None:
    """session.get/putAttribute (both forms)/getAttribute/read, flowFile.getAttribute, log."""
    path = write(
        tmp_path,
        "forms.py",
        """
        import json
        from org.apache.nifi.processor.io import InputStreamCallback
        from org.apache.commons.io import IOUtils
        from java.nio.charset import StandardCharsets

        class Reader(InputStreamCallback):
            def process(self, inputStream):
                self.text = IOUtils.toString(inputStream, StandardCharsets.UTF_8)

        flowFile = session.get()
        assert session.get() is None
        reader = Reader()
        session.read(flowFile, reader)
        number = json.loads(reader.text)["number"]
        flowFile = session.putAttribute(flowFile, "seen", number)
        session.putAttribute("count", 5)
        session.putAttribute("flag", True)
        log.info("order {} seen", number)
        copy = flowFile.getAttribute("incoming") + "|" + get_attribute("seen")
        session.putAttribute(flowFile, "copy", copy)
        session.transfer(flowFile, REL_SUCCESS)
        """,
    )
    reply = call(pool, path, {"incoming": "x"})
    assert reply["ok"], reply
    assert reply["result"] == ORDER  # content not rewritten: the order goes on unchanged
    assert reply["attributes"] == {
        "incoming": "x",
        "seen": "1001",
        "count": "5",
        "flag": "true",
        "copy": "x|1001",
    }
    assert reply["log"] == [("info", "order 1001 seen")]


def test_compat_simple_form_input_text_output_stream(pool: ScriptPool, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "simple.py",
        """
        import json
        data = json.loads(input_text)
        data["erp_code"] = "C-" + data["number"]
        outputStream.write(json.dumps(data))
        session.putAttribute("log.code", data["erp_code"])
        """,
    )
    reply = call(pool, path)
    assert reply["ok"] and reply["result"]["erp_code"] == "C-1001"
    assert reply["attributes"]["log.code"] == "C-1001"


def test_compat_rel_failure_fails_the_order(pool: ScriptPool, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "fail.py",
        """
        flowFile = session.get()
        session.transfer(flowFile, REL_FAILURE)
        """,
    )
    reply = call(pool, path)
    assert not reply["ok"]
    assert "REL_FAILURE" in reply["attributes"]["log.script.error"]


def test_compat_check_response_gets_request_and_response(pool: ScriptPool) -> None:
    path = ROOT / "scripts" / "compat" / "check_response.py"
    reply = call(
        pool,
        path,
        entry="check_response",
        request={"order_number": "1001"},
        response={"id": "ERP-7", "lines": [{"external_id": 1, "line_id": "L1"}]},
    )
    assert reply["ok"], reply
    assert reply["result"] == {
        "order": {"erp_order_id": "ERP-7"},
        "order_items": [{"pk": 1, "extra_field": {"erp_line_id": "L1"}}],
    }
    assert reply["attributes"]["erp.reference"] == "ERP-7"


def test_hanging_script_is_killed_and_the_next_call_passes(
    pool: ScriptPool, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        "hang.py",
        """
        import time
        def process(data, attributes):
            if data["number"] == "hang":
                time.sleep(3600)
            return data
        """,
    )
    reply = call(pool, path, timeout=1, data={"number": "hang"})
    assert not reply["ok"]
    assert reply["attributes"]["log.script.error"].startswith("TimeoutError")
    assert "limit of 1s" in reply["error"]
    assert pool.replaced == 1
    assert call(pool, path, data={"number": "ok"})["ok"]


def test_sys_exit_and_hard_exit_fail_only_their_call(pool: ScriptPool, tmp_path: Path) -> None:
    soft = write(
        tmp_path,
        "soft.py",
        """
        import sys
        def process(data):
            sys.exit(3)
        """,
    )
    hard = write(
        tmp_path,
        "hard.py",
        """
        import os
        def process(data):
            os._exit(4)
        """,
    )
    ok = write(tmp_path, "ok.py", "def process(data):\n    return data\n")
    reply = call(pool, soft)
    assert not reply["ok"] and "sys.exit(3)" in reply["attributes"]["log.script.error"]
    assert "line 3" in reply["error"]
    assert pool.replaced == 0  # SystemExit is caught in the worker
    reply = call(pool, hard)
    assert not reply["ok"] and "exit code 4" in reply["error"]
    assert pool.replaced == 1
    assert call(pool, ok)["ok"]


def test_memory_hog_fails_its_call_within_the_worker_limit(
    pool: ScriptPool, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        "hog.py",
        """
        def process(data):
            chunks = []
            while True:
                chunks.append(bytearray(16 * 1024 * 1024))
        """,
    )
    reply = call(pool, path)
    assert not reply["ok"]
    assert reply["attributes"]["log.script.error"].startswith("MemoryError")
    ok = write(tmp_path, "ok.py", "def process(data):\n    return data\n")
    assert call(pool, ok)["ok"]


def test_native_attributes_become_strings(pool: ScriptPool, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "attrs.py",
        """
        def process(data, attributes):
            attributes["n"] = 3
            attributes["b"] = False
            attributes["none"] = None
            return data
        """,
    )
    script, _ = load_script(path, "process", "f", "k")
    assert script is not None
    attributes = {"keep": "1"}
    result, raw = script.run(pool, attributes, data=ORDER, order=ORDER)
    assert result == ORDER and raw is None
    assert attributes == {"keep": "1", "n": "3", "b": "false", "none": ""}


def test_load_script_detects_runtime_and_explains_errors(tmp_path: Path) -> None:
    py2 = write(tmp_path, "py2.py", 'print "hello"\n')
    script, issues = load_script(py2, "process", "flows/f.yaml", "stages[3].script.path")
    assert script is None
    msg = str(issues[0])
    assert msg.startswith("flows/f.yaml [stages[3].script.path]: script")
    assert "line 1" in msg and 'print "hello"' in msg and "Python 2 syntax" in msg
    neither = write(tmp_path, "neither.py", "x = 1\n")
    _, issues = load_script(neither, "process", "f", "k")
    assert "no function process() and no ExecuteScript-style code" in issues[0].message
    bad_args = write(tmp_path, "args.py", "def process(data, extra):\n    return data\n")
    _, issues = load_script(bad_args, "process", "f", "k")
    assert "unknown argument(s) extra" in issues[0].message


# ------------------------------------------------------------------ through the CLI
def test_flow_with_compat_scripts_delivers_every_order_once(
    project: Project, sandbox: Sandbox
) -> None:
    numbers = unsent(sandbox)
    project.edit_flow("path: scripts/enrich_order.py", "path: scripts/compat/enrich_order.py")
    project.edit_flow(
        "  - check_response\n",
        "  - check_response:\n      script: scripts/compat/check_response.py\n",
    )
    project.edit_flow("path: scripts/post_log.py", "path: scripts/compat/post_log.py")
    v = project.run("validate")
    assert v.code == 0, v.err
    assert "script (compat runtime)" in v.out and "check_response (compat runtime)" in v.out
    r = project.run("run-flow", "order_flow", "--no-progress")
    assert r.code == 0, r.out + r.err
    assert_exactly_once(sandbox, numbers)
    logged = dict(
        project.sql(f"SELECT key, value FROM order_log WHERE order_number='{numbers[0]}'")
    )
    pk = next(o["pk"] for o in sandbox.omnitron.orders.values() if o["number"] == numbers[0])
    lines = sum(1 for i in sandbox.omnitron.items.values() if i["order"] == pk)
    assert logged["log.lines"] == str(lines)
    assert logged["log.outcome"].startswith("sent as ERP-")


def test_hanging_script_in_a_flow_fails_one_order_and_the_others_pass(
    project: Project, sandbox: Sandbox
) -> None:
    numbers = unsent(sandbox)
    bad = numbers[2]
    project.misbehave_for(bad, "import time", "time.sleep(600)")
    project.edit_flow(
        "path: scripts/enrich_order.py", "path: scripts/enrich_order.py\n      timeout: 1"
    )
    r = project.run("run-flow", "order_flow", "--no-progress")
    assert r.code == 1
    assert project.state(bad) == "failed"
    logged = dict(project.sql(f"SELECT key, value FROM order_log WHERE order_number='{bad}'"))
    assert logged["log.script.error"].startswith("TimeoutError")
    assert bad not in sandbox.erp.received
    assert sorted(sandbox.erp.received) == sorted(n for n in numbers if n != bad)
    assert stats(sandbox.erp.url)["duplicates"] == 0


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "integrator", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_test_script_command(tmp_path: Path) -> None:
    (tmp_path / "order.json").write_text(json.dumps(ORDER))
    r = cli(
        "test-script",
        str(ROOT / "scripts" / "enrich_order.py"),
        "--input",
        "order.json",
        "--attr",
        "order.number=1001",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["runtime"] == "native"
    assert out["result_data"]["gross_amount"] == "15.00"
    assert out["attributes"] == {"log.lines": "2", "log.gross_amount": "15.00"}
    (tmp_path / "req.json").write_text('{"order_number": "1001"}')
    (tmp_path / "resp.json").write_text('{"lines": []}')
    r = cli(
        "test-script",
        str(ROOT / "scripts" / "compat" / "check_response.py"),
        "--step",
        "check_response",
        "--request",
        "req.json",
        "--response",
        "resp.json",
        cwd=tmp_path,
    )
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert out["attributes"]["log.script.error"].startswith("ValueError: the ERP answered")
    assert "script failed" in r.stderr and "Traceback" not in r.stderr
    write(tmp_path, "text.py", 'outputStream.write("not json")\n')
    r = cli("test-script", "text.py", "--input", "order.json", cwd=tmp_path)
    assert r.returncode == 0 and json.loads(r.stdout)["result_data"] == "not json"
    (tmp_path / "broken.json").write_text('{"number": ')
    r = cli("test-script", "text.py", "--input", "broken.json", cwd=tmp_path)
    assert r.returncode == 2 and "broken.json" in r.stderr and "line 1" in r.stderr


def test_test_mapping_command(tmp_path: Path) -> None:
    (tmp_path / "order.json").write_text(json.dumps(ORDER))
    spec = ROOT / "flows" / "specs" / "order_to_erp.json"
    r = cli("test-mapping", str(spec), "--input", "order.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["order_number"] == "1001" and out["lines"][1]["unit_price"] == "4.50"
    (tmp_path / "bad.json").write_text(
        json.dumps(
            [
                {"operation": "shift", "spec": {"a": "b"}},
                {"operation": "shift", "spec": {"@(1,": "y"}},
            ]
        )
    )
    r = cli("test-mapping", "bad.json", "--input", "order.json", cwd=tmp_path)
    assert r.returncode == 2
    assert "operation [1]" in r.stderr and "@(1," in r.stderr and "Traceback" not in r.stderr


def test_test_flow_and_golden_diff(tmp_path: Path) -> None:
    """Golden cases pass as shipped; a changed spec shows a diff; --update accepts it.
    No connector secret is set: test-flow calls nothing."""
    p = make_project(tmp_path, {})
    env = {k: "" for k in ("OMNITRON_USERNAME", "OMNITRON_PASSWORD", "ERP_TOKEN")}
    r = p.run("test-flow", "--golden", env=env)
    assert r.code == 0, r.out + r.err
    assert "ok   order_flow/with_discount" in r.out and "2 passed, 0 failed" in r.out
    spec = p.root / "flows" / "specs" / "order_to_erp.json"
    spec.write_text(spec.read_text().replace('"amount": "total"', '"amount": "amount_total"'))
    r = p.run("test-flow", "--golden")
    assert r.code == 1
    assert "FAIL order_flow/with_discount: the ERP payload differs" in r.out
    assert '-  "total": "2591.46"' in r.out.replace("  -", "-")
    assert '+  "amount_total": "2591.46"' in r.out.replace("  +", "+")
    r = p.run("test-flow", "--golden", "--update")
    assert r.code == 0 and "updated" in r.out
    assert p.run("test-flow", "--golden").code == 0
    order = p.root / "flows" / "tests" / "order_flow" / "with_discount.order.json"
    r = p.run("test-flow", "order_flow", "--order", str(order))
    assert r.code == 0, r.err
    out = json.loads(r.out)
    stages = {s["stage"]: s for s in out["stages"]}
    assert list(stages) == [
        "login", "query_check", "script", "mapping", "write", "check_response", "mark_sent",
        "post_script",
    ]  # fmt: skip
    # what calls out is shown, not sent
    assert [c["method"] for c in stages["query_check"]["would_send"]] == ["GET"]
    assert [c["method"] for c in stages["write"]["would_send"]] == ["POST"]
    assert stages["mark_sent"]["would_send"][-1]["body"] == {"is_send": True}
    assert stages["script"]["attributes"]["log.gross_amount"]
    assert out["attributes"]["other"]["query_check.found"] == "false"
    assert out["erp_request"]["amount_total"] == "2591.46"
    assert out["mapping_data"]["order"]["erp_order_id"] == "ERP-TEST-0000001"
    script = p.root / "scripts" / "enrich_order.py"
    script.write_text(script.read_text().replace("    return data", "    return data[0]"))
    r = p.run("test-flow", "order_flow", "--order", str(order))
    assert r.code == 1 and "flow failed: script: script error: KeyError" in r.err
    assert "Traceback" not in r.err
