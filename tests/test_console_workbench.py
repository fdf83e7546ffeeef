"""The console's workbench through real HTTP: a script, a mapping and a whole flow on a
recorded order, the golden tests' status, hostile scripts bounded, and the POST guard of the
console without users (with users: test_console_security)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from support import Project, stats
from support.console import ConsoleProcess, console
from support.daemon import daemon

from integrator.sandbox import Sandbox

CASE = Path("flows/tests/order_flow/with_discount.order.json")
EXPECTED = Path("flows/tests/order_flow/with_discount.expected.json")


def _post(c: ConsoleProcess, path: str, body: dict[str, Any], **kw: Any) -> requests.Response:
    return requests.post(c.url + path, json=body, timeout=60, **kw)


def _stage(c: ConsoleProcess, name: str, flow: str = "order_flow") -> int:
    flows = {f["flow"]: f for f in c.json("/api/workbench")["flows"]}
    return int(next(s["index"] for s in flows[flow]["stages"] if s["stage"] == name))


def test_script_mapping_and_whole_flow_on_a_recorded_order(
    project: Project, sandbox: Sandbox
) -> None:
    before = {"erp": stats(sandbox.erp.url), "omnitron": stats(sandbox.omnitron.url)}
    order = json.loads((project.root / CASE).read_text())
    with console(project) as c:
        catalogue = c.json("/api/workbench")["flows"]
        assert {f["flow"] for f in catalogue} >= {"order_flow", "order_status"}
        of = next(f for f in catalogue if f["flow"] == "order_flow")
        assert of["recorded"] == ["with_discount"]
        assert [s["stage"] for s in of["stages"]] == ["script", "mapping", "post_script"]

        # the script: as `integrator test-script` runs it (one place for both)
        r = _post(c, "/api/workbench/run", {"flow": "order_flow", "stage": _stage(c, "script"),
                                            "recorded": "with_discount",
                                            "attributes": {"log.by": "me"}})  # fmt: skip
        assert r.status_code == 200, r.text
        script = r.json()
        assert script["kind"] == "script" and script["runtime"] == "native"
        cli = project.run("test-script", "scripts/enrich_order.py", "--input", str(CASE),
                          "--flow", "order_flow")  # fmt: skip
        assert cli.code == 0, cli.err
        assert script["result_data"] == json.loads(cli.out)["result_data"]
        assert script["result_data"]["gross_amount"] and script["attributes"]["log.lines"]

        # the mapping: the flow's own stage, on the script's output
        r = _post(c, "/api/workbench/run", {"flow": "order_flow", "stage": _stage(c, "mapping"),
                                            "input": script["result_data"]})  # fmt: skip
        assert r.status_code == 200, r.text
        (project.root / "mapped.json").write_text(json.dumps(script["result_data"]))
        cli = project.run("test-mapping", "flows/specs/order_to_erp.json", "--input",
                          "mapped.json", "--flow", "order_flow")  # fmt: skip
        assert r.json()["kind"] == "mapping" and r.json()["result_data"] == json.loads(cli.out)

        # the whole flow, pasted: the golden payload, and the sandbox's answer
        r = _post(c, "/api/workbench/run", {"flow": "order_flow", "input": order})
        assert r.status_code == 200, r.text
        flow = r.json()
        assert flow["kind"] == "flow" and flow["error"] is None
        assert flow["erp_payload"] == json.loads((project.root / EXPECTED).read_text())
        cli = project.run("test-flow", "order_flow", "--order", str(CASE))
        traced = json.loads(cli.out)
        assert flow["erp_response"] == traced["erp_response"] and flow["state"] == traced["state"]
        assert flow["stages"] == traced["stages"]
        assert "log.lines" in flow["attributes"]["log"]

        # the page: htmx posts the form, the fragment shows the payload
        html = requests.post(c.url + "/workbench/run", data={"target": "order_flow|flow",
                             "recorded": "order_flow/with_discount", "attributes": "a=1"},
                             headers={"HX-Request": "true"}, timeout=60)  # fmt: skip
        assert html.status_code == 200 and 'id="erp-payload"' in html.text, html.text
        assert "with_discount" in c.page("/workbench")

        # golden tests: pass, then fail with a diff once the expected payload is changed
        g = _post(c, "/api/workbench/golden", {"flow": "order_flow"}).json()
        assert (g["passed"], g["failed"]) == (1, 0) and g["cases"][0]["status"] == "ok"
        expected = json.loads((project.root / EXPECTED).read_text())
        expected["order_number"] = "SOMETHING-ELSE"
        (project.root / EXPECTED).write_text(json.dumps(expected))
        g = _post(c, "/api/workbench/golden", {}).json()
        bad = next(x for x in g["cases"] if x["flow"] == "order_flow")
        assert bad["status"] == "fail" and any("SOMETHING-ELSE" in line for line in bad["diff"])
        page = requests.post(c.url + "/workbench/golden", data={"flow": "order_flow"},
                             headers={"HX-Request": "true"}, timeout=60)  # fmt: skip
        assert 'class="failed">fail<' in page.text
    # nothing called out: no sandbox server saw a call
    assert {"erp": stats(sandbox.erp.url), "omnitron": stats(sandbox.omnitron.url)} == before


def test_bad_requests_say_what_was_expected(project: Project) -> None:
    with console(project) as c:
        cases: list[tuple[dict[str, Any], int, str]] = [
            ({"stage": "flow", "input": {}}, 400, "flow: name the flow"),
            ({"flow": "nope", "input": {}}, 404, "no valid flow named 'nope'"),
            ({"flow": "order_flow"}, 400, "paste an order's JSON"),
            ({"flow": "order_flow", "input": '{\n  "a": }'}, 400, "line 2, column 8"),
            ({"flow": "order_flow", "input": {}, "stage": "x"}, 400, "a stage's index"),
            ({"flow": "order_flow", "input": {}, "stage": 0}, 400, "not a script or a mapping"),
            ({"flow": "order_flow", "recorded": "missing"}, 404, "no recorded order 'missing'"),
            ({"flow": "order_flow", "input": {}, "attributes": {"a": 1}}, 400, "attributes"),
            ({"flow": "order_flow", "input": {}, "status": 700}, 400, "status"),
            ({"flow": "order_flow", "input": [1]}, 400, "takes an order object"),
        ]
        for body, code, text in cases:
            r = _post(c, "/api/workbench/run", body)
            assert r.status_code == code and text in r.json()["detail"], (body, r.text)
        r = requests.post(c.url + "/api/workbench/run", data="[]", timeout=10,
                          headers={"Content-Type": "application/json"})  # fmt: skip
        assert r.status_code == 400 and "JSON object body" in r.json()["detail"]
        # the page's form: a bad attribute line is named
        r = requests.post(c.url + "/workbench/run", data={"target": "order_flow|flow",
                          "input": "{}", "attributes": "ok=1\nbroken"},
                          headers={"HX-Request": "true"}, timeout=30)  # fmt: skip
        assert r.status_code == 200 and "attributes, line 2: expected KEY=VALUE" in r.text


def test_actions_only_from_the_consoles_own_pages(project: Project) -> None:
    """Without users: a POST reaches only the workbench's runs (security.LOCAL_WRITES), and only
    with htmx's header or a JSON body, from a loopback origin (another site cannot)."""
    body = {"flow": "order_flow", "input": {}}
    with console(project) as c:
        form = {"target": "order_flow|flow", "input": "{}"}
        # a plain form from any page (no custom header, a "simple" content type): refused
        r = requests.post(c.url + "/workbench/run", data=form, timeout=10)
        assert r.status_code == 403 and "HX-Request" in r.json()["detail"]
        r = requests.post(c.url + "/api/workbench/run", data=json.dumps(body), timeout=10,
                          headers={"Content-Type": "text/plain"})  # fmt: skip
        assert r.status_code == 403
        for origin in ("http://evil.example", "null", "http://127.0.0.1.evil.example:80"):
            r = _post(c, "/api/workbench/run", body, headers={"Origin": origin})
            assert r.status_code == 403 and "may not act" in r.json()["detail"], origin
        r = requests.post(c.url + "/workbench/run", data=form, timeout=30,
                          headers={"HX-Request": "true", "Origin": c.url})  # fmt: skip
        assert r.status_code == 200
        # the Host header is still checked first (DNS rebinding)
        r = _post(c, "/api/workbench/run", body, headers={"Host": "evil.example"})
        assert r.status_code == 421
        # every other route stays read-only
        for path in ("/api/flows", "/runs/1", "/workbench", "/api/workbench"):
            assert _post(c, path, body).status_code == 405, path


def test_hostile_scripts_are_bounded_and_reported(project: Project) -> None:
    scripts = project.root / "scripts"
    (scripts / "spin.py").write_text("def process(data, attributes):\n    while True:\n"
                                     "        pass\n")  # fmt: skip
    (scripts / "huge.py").write_text(
        "def process(data, attributes):\n"
        "    attributes['log.big'] = 'y' * 100\n"
        "    return {'blob': 'x' * 3_000_000}\n"
    )
    project.edit_flow(
        "  - script:\n      path: scripts/enrich_order.py",
        "  - script:\n      path: scripts/spin.py\n      timeout: 0.5\n"
        "  - script:\n      path: scripts/huge.py",
    )
    with console(project) as c:
        stages = next(s for s in c.json("/api/workbench")["flows"] if s["flow"] == "order_flow")
        spin, huge = (s["index"] for s in stages["stages"][:2])
        started = time.monotonic()
        r = _post(c, "/api/workbench/run", {"flow": "order_flow", "stage": spin, "input": {}})
        took = time.monotonic() - started
        assert r.status_code == 200, r.text
        assert "TimeoutError" in r.json()["error"] and took < 10, (took, r.json())
        r = _post(c, "/api/workbench/run", {"flow": "order_flow", "stage": huge, "input": {}})
        answer = r.json()
        assert answer["result_data"]["truncated"] is True
        assert answer["result_data"]["json_chars"] > 3_000_000
        assert len(r.content) < 100_000
        # the whole flow stops at the spinning script, named, within its limit
        r = _post(c, "/api/workbench/run", {"flow": "order_flow", "recorded": "with_discount"})
        assert r.json()["failure"]["stage"] == "script" and "TimeoutError" in r.json()["error"]
        # the console still answers
        assert c.json("/api/flows")["flows"]


def test_the_daemon_serves_the_workbench(project: Project, sandbox: Sandbox) -> None:
    order = json.loads((project.root / CASE).read_text())
    with daemon(project) as d:
        r = requests.post(d.url("/api/workbench/run"), json={"flow": "order_flow",
                          "input": order}, timeout=60)  # fmt: skip
        assert r.status_code == 200 and r.json()["erp_payload"], r.text
        assert requests.get(d.url("/workbench"), timeout=5).status_code == 200


def test_at_most_two_runs_at_once() -> None:
    """A third run while two are in progress is refused at once (429), not queued."""
    from integrator.connectors.redact import Redactor
    from integrator.console.workbench import Workbench, WorkbenchError

    entered, release = threading.Semaphore(0), threading.Event()

    def slow_load() -> Any:
        entered.release()
        release.wait(10)
        raise WorkbenchError(400, "released")

    bench = Workbench(slow_load, lambda: Redactor([]))
    errors: list[str] = []

    def run() -> None:
        try:
            bench.run({})
        except WorkbenchError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    assert entered.acquire(timeout=5) and entered.acquire(timeout=5)
    with pytest.raises(WorkbenchError) as third:
        bench.run({})
    assert third.value.status == 429
    release.set()
    for t in threads:
        t.join(5)
    assert errors == ["released", "released"]


def test_no_secret_in_a_workbench_answer(project: Project, sandbox: Sandbox) -> None:
    """A script that copies a secret into its result and attributes: the answer masks it."""
    secret = sandbox.env()["ERP_TOKEN"]  # config.yaml's BearerToken
    (project.root / "scripts" / "leak.py").write_text(
        "def process(data, attributes):\n"
        "    attributes['log.leak'] = data['pw']\n"
        "    return {'copied': data['pw'], 'password': 'x'}\n"
    )
    project.edit_flow("path: scripts/enrich_order.py", "path: scripts/leak.py")
    with console(project) as c:
        index = _stage(c, "script")
        r = _post(c, "/api/workbench/run", {"flow": "order_flow", "stage": index,
                                            "input": {"pw": secret}})  # fmt: skip
        assert r.status_code == 200, r.text
        assert secret not in r.text and r.json()["result_data"]["password"] != "x"
        html = requests.post(c.url + "/workbench/run", data={"target": f"order_flow|{index}",
                             "input": json.dumps({"pw": secret})},
                             headers={"HX-Request": "true"}, timeout=30)  # fmt: skip
        assert html.status_code == 200 and secret not in html.text and "log.leak" in html.text
