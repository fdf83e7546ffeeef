"""Issue 14 attacked: answer rules, headers and sessions as a hostile ERP, a hostile script and a
user's typo meet them, through the CLI against the sandbox. Each test failed before its fix:

- a status listed in ``not_found_status_codes`` is "not found" whatever the answer rules say of
  its body (a REST ERP's 404 ``{"error": "order not found"}`` under ``refused: error`` was
  "refused", and no order was ever written);
- an answer rule that cannot be read on an answer (``contains(error.message, …)`` on a good
  answer without ``error``) is the flow's error, said so with the rule, and a write it meets
  may have landed: never an "internal error, please report it";
- a header a template makes with a line break or a character HTTP cannot carry fails the order
  before anything is sent (it was an internal error, the order left at ``sending``);
- a session that expires again right after a fresh login does not blame the credentials.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from support import ROOT, Project, assert_exactly_once, fault_rule, stats, unsent

from integrator.sandbox import Sandbox


def jsonrpc_project(tmp_path: Path, sb: Sandbox) -> Project:
    """A copy of flows/jsonrpc, its store where Project reads it, backoff and settling at once."""
    shutil.copytree(ROOT / "flows" / "jsonrpc", tmp_path, dirs_exist_ok=True)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(cfg.read_text().replace("state/jsonrpc.db", "state/integrator.db"), "utf-8")
    project = Project(tmp_path, sb.env())
    project.edit_flow(
        "stages:", "backoff_seconds: 0\nsettle_seconds: 0\nstages:", "order_to_jsonrpc"
    )
    return project


def rpc_url(sb: Sandbox) -> str:
    """The JSON-RPC ERP's URL."""
    assert sb.jsonrpc_erp is not None
    return str(sb.jsonrpc_erp.url)


def run(project: Project, flow: str, *args: str) -> tuple[int, str]:
    r = project.run("run-flow", flow, "--no-progress", *args)
    out = r.out + r.err
    assert "Traceback" not in out, out
    return r.code, out


WRITE_RULES = (
    "        preset: jsonrpc                       # a UserError (unknown product): refused, "
    "resent later\n"
    '        session_expired: "error.code == `100`"\n'
)


def test_a_404_listed_as_not_found_is_not_found_whatever_the_rules_say(
    project: Project, sandbox: Sandbox
) -> None:
    """A REST ERP answers an unknown order 404 ``{"error": "order not found"}``; the flow lists
    404 as not found and declares ``refused: error`` for its error answers. Before: every
    order "refused" by query_check on every run, none ever written."""
    project.edit_flow(
        """      url: /api/orders/?number=${_order.number}
      method: GET
      response_path: count
      response_path_value: "1"
""",
        """      url: /api/orders/by-number/${_order.number}/
      method: GET
      response_path: order_number
      answer:
        refused: error
""",
    )
    numbers = unsent(sandbox)
    code, out = run(project, "order_flow")
    assert code == 0, out
    assert_exactly_once(sandbox, numbers)
    # Found on the next run by the same query: nothing is written again.
    code, out = run(project, "order_flow")
    assert code == 0, out
    assert_exactly_once(sandbox, numbers)


def test_an_answer_rule_that_cannot_be_read_is_the_flows_error_and_writes_once(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    """``contains(error.message, 'timeout')`` meets a good answer, which has no ``error``:
    JMESPath cannot call contains() on null. The ERP took the order, so it may have landed:
    kept at ``sending`` with a message that names the rule, settled by query_check next run,
    never written twice. Before: an internal error asking to report a bug."""
    project = jsonrpc_project(tmp_path, sandbox)
    project.edit_flow(
        WRITE_RULES,
        WRITE_RULES + "        may_have_landed: \"contains(error.message, 'timeout')\"\n",
        "order_to_jsonrpc",
    )
    numbers = unsent(sandbox)
    code, out = run(project, "order_to_jsonrpc")
    assert code == 1, out
    assert "internal error" not in out, out
    assert "contains(error.message, 'timeout')" in out and "cannot be read" in out, out
    assert all(project.state(n) == "sending" for n in numbers), out
    st = stats(rpc_url(sandbox))
    assert sorted(st["created"]) == sorted(numbers) and st["duplicates"] == 0, st
    code, out = run(project, "order_to_jsonrpc")
    assert code == 0, out
    st = stats(rpc_url(sandbox))
    assert sorted(st["created"]) == sorted(numbers) and st["duplicates"] == 0, st
    assert all(project.state(n) == "done" for n in numbers)


def test_an_id_path_that_cannot_be_read_loses_no_written_order(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    """``id_path: length(result)`` on an answer whose result is a number: the reference cannot
    be read, but the write landed: the order is sent and done, the reason in its log."""
    project = jsonrpc_project(tmp_path, sandbox)
    project.edit_flow(
        WRITE_RULES + "        id_path: result\n",
        WRITE_RULES + "        id_path: length(result)\n",
        "order_to_jsonrpc",
    )
    numbers = unsent(sandbox)
    code, out = run(project, "order_to_jsonrpc")
    assert code == 0, out
    assert all(project.state(n) == "done" for n in numbers)
    st = stats(rpc_url(sandbox))
    assert sorted(st["created"]) == sorted(numbers) and st["duplicates"] == 0, st
    shown = project.run("orders", "show", numbers[0], "--flow", "order_to_jsonrpc").out
    assert "length(result)" in shown, shown


def _header_from_script(project: Project, value: str) -> None:
    scripts = project.root / "scripts"
    scripts.mkdir(exist_ok=True)
    (scripts / "note.py").write_text(
        f"def process(data, attributes):\n    attributes['note'] = {value!r}\n    return data\n"
    )
    project.edit_flow(
        """  - mapping:
      spec: specs/order_to_sale_order.json
  - write:
      path: /jsonrpc
""",
        """  - script:
      path: scripts/note.py
  - mapping:
      spec: specs/order_to_sale_order.json
  - write:
      path: /jsonrpc
      headers: {X-Note: "${attributes.note}"}
""",
        "order_to_jsonrpc",
    )


def test_a_header_with_a_line_break_fails_the_order_before_anything_is_sent(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    project = jsonrpc_project(tmp_path, sandbox)
    _header_from_script(project, "a\r\nX-Injected: yes")
    numbers = unsent(sandbox)
    code, out = run(project, "order_to_jsonrpc")
    assert code == 1, out
    assert "internal error" not in out, out
    assert "X-Note" in out and "line break" in out, out
    assert "X-Injected" not in out  # the value is not repeated
    assert all(project.state(n) == "failed" for n in numbers), out
    assert stats(rpc_url(sandbox))["received"] == 0


def test_a_header_with_text_http_cannot_carry_fails_the_order_before_anything_is_sent(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    """A Turkish letter in a header (ISO-8859-1 has no Ş): said, named, nothing sent."""
    project = jsonrpc_project(tmp_path, sandbox)
    _header_from_script(project, "Şişli")
    numbers = unsent(sandbox)
    code, out = run(project, "order_to_jsonrpc")
    assert code == 1, out
    assert "internal error" not in out, out
    assert "X-Note" in out and "U+015E" in out, out
    assert all(project.state(n) == "failed" for n in numbers), out
    assert stats(rpc_url(sandbox))["received"] == 0


def test_a_script_naming_an_odd_content_type_fails_the_order_before_anything_is_sent(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    """``write.content_type`` set by a script with a line break: the order fails, unsent."""
    project = jsonrpc_project(tmp_path, sandbox)
    scripts = project.root / "scripts"
    scripts.mkdir()
    (scripts / "text.py").write_text(
        "def process(data, attributes):\n"
        "    attributes['write.content_type'] = 'text/xml\\r\\nX-Injected: yes'\n"
        "    return '<a/>'\n"
    )
    project.edit_flow(
        """  - write:
      path: /jsonrpc
      body:
        jsonrpc: "2.0"
        method: call
        id: 1
        params:
          service: object
          method: execute
          args: ["${vars.model}", create, ["${data}"]]   # ${data}: the mapped order, as JSON
""",
        """  - script:
      path: scripts/text.py
  - write:
      path: /jsonrpc
""",
        "order_to_jsonrpc",
    )
    numbers = unsent(sandbox)
    code, out = run(project, "order_to_jsonrpc")
    assert code == 1, out
    assert "internal error" not in out, out
    assert "Content-Type" in out and "line break" in out, out
    assert all(project.state(n) == "failed" for n in numbers), out
    assert stats(rpc_url(sandbox))["received"] == 0


def test_a_session_that_expires_again_after_a_fresh_login_does_not_blame_the_credentials(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    """Every create finds its session dead (or a session_expired rule that matches every
    answer): one new login, then the run stops, nothing written, nothing charged, and the
    message says what happened, not "the credentials are refused"."""
    project = jsonrpc_project(tmp_path, sandbox)
    fault_rule(rpc_url(sandbox), action="expire_sessions", route="create")
    code, out = run(project, "order_to_jsonrpc", "--limit", "1")
    assert code == 1, out
    assert "credentials" not in out, out
    assert "expired again right after a fresh login" in out, out
    st = stats(rpc_url(sandbox))
    assert st["created"] == {} and st["logins"]["session_login"] == 2, st
    assert project.sql("SELECT attempts FROM journal") == [(0,)]


def test_a_login_refused_rule_that_cannot_be_read_stops_the_run_saying_so(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    """TokenLogin's ``Refused: "contains(error.message, 'denied')"`` meets a good login answer
    (no ``error``): the run stops before any order, naming the rule, not the password."""
    project = jsonrpc_project(tmp_path, sandbox)
    cfg = project.root / "config.yaml"
    text = cfg.read_text()
    assert text.count("      Refused: error\n") == 1
    cfg.write_text(
        text.replace(
            "      Refused: error\n", "      Refused: \"contains(error.message, 'denied')\"\n"
        )
    )
    code, out = run(project, "order_to_jsonrpc")
    assert code != 0, out
    assert "internal error" not in out, out
    assert "Refused" in out and "cannot be read" in out, out
    assert "Username and Password" not in out, out
    assert stats(rpc_url(sandbox))["received"] == 0


def test_a_login_answer_that_would_split_a_header_stops_the_run_unsent(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    """A hostile ERP answers the login with a key holding CR LF, which the connector's
    ``Headers`` put in ``Authorization``: the login is refused, naming the header, never
    quoting the key; no call carries it. Before: every order an internal error."""
    project = jsonrpc_project(tmp_path, sandbox)
    cfg = project.root / "config.yaml"
    text = cfg.read_text()
    recipe = (
        "Authorization: \"Session ${base64(concat(connector.Username, ':', login.result[0], "
        "':', login.result[1]))}\""
    )
    assert recipe in text
    cfg.write_text(text.replace(recipe, 'Authorization: "Session ${login.result[1]}"'))
    key = "hostile-key\r\nX-Injected: yes"
    fault_rule(
        rpc_url(sandbox),
        action="body",
        route="login",
        status=200,
        body=json.dumps({"jsonrpc": "2.0", "id": 1, "result": [2, key]}),
        content_type="application/json",
    )
    code, out = run(project, "order_to_jsonrpc")
    assert code != 0, out
    assert "internal error" not in out, out
    assert "'Authorization'" in out and "line break" in out, out
    assert "hostile-key" not in out and "X-Injected" not in out, out
    st = stats(rpc_url(sandbox))
    assert st["calls"].get("search", 0) == 0 and st["received"] == 0, st


def test_a_refused_rule_matching_a_good_login_answer_does_not_quote_the_erp(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    """A typo, ``Refused: result``, matches every good answer: the message says the rule
    matched and the answer gave no reason; it never puts the rule in the ERP's mouth."""
    project = jsonrpc_project(tmp_path, sandbox)
    cfg = project.root / "config.yaml"
    text = cfg.read_text()
    cfg.write_text(text.replace("      Refused: error\n", "      Refused: result\n"))
    code, out = run(project, "order_to_jsonrpc")
    assert code != 0, out
    assert "the ERP says" not in out, out
    assert "matches TokenLogin's Refused: result, and gives no reason" in out, out
    assert "its Refused rule" in out, out


def test_a_connector_header_http_cannot_carry_is_a_configuration_error(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    """``CustomHeaders: {X-Company: "Şirket A.Ş."}``, or a value from the environment with a
    line break: validate names the file, line and header; the run stops before any call.
    Before: validate said ok, and the run crashed with an internal error."""
    project = jsonrpc_project(tmp_path, sandbox)
    cfg = project.root / "config.yaml"
    text = cfg.read_text()
    anchor = "    DisplayName: JSON-RPC ERP, session header\n"
    assert anchor in text
    cfg.write_text(
        text.replace(
            anchor,
            anchor + '    CustomHeaders:\n      X-Company: "Şirket A.Ş."\n'
            "      X-Tenant: ${TENANT}\n",
        )
    )
    project.env["TENANT"] = "acme\r\nX-Injected: yes"
    r = project.run("validate")
    out = r.out + r.err
    assert r.code == 2, out
    assert "config.yaml:" in out and "X-Company" in out and "U+015E" in out, out
    assert "X-Tenant" in out and "line break" in out and "X-Injected" not in out, out
    code, out = run(project, "order_to_jsonrpc")
    assert code == 2 and "internal error" not in out, out
    assert stats(rpc_url(sandbox))["calls"].get("login", 0) == 0


def test_a_token_that_would_split_the_header_stops_the_run_for_every_login_kind(
    project: Project, sandbox: Sandbox
) -> None:
    """Omnitron's login (TokenPath ``key``, ``Token {token}``) answers a key holding CR LF:
    the run stops at the login, naming the header, never the key; nothing is listed."""
    fault_rule(
        sandbox.omnitron.url,
        action="body",
        route="login",
        status=200,
        body=json.dumps({"key": "hostile-key\r\nX-Injected: yes"}),
        content_type="application/json",
    )
    code, out = run(project, "order_flow")
    assert code != 0, out
    assert "internal error" not in out, out
    assert "'Authorization'" in out and "line break" in out, out
    assert "hostile-key" not in out and "X-Injected" not in out, out
    assert stats(sandbox.omnitron.url)["calls"].get("list", 0) == 0
