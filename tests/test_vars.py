"""Flow constants (``vars:`` in config.yaml and in a flow): scripts get them as attributes
``vars.NAME``, Jolt specs as the context ``^vars.NAME``, in a run, a dry run and test-flow;
the workbench with ``--flow``. Secrets stay in connectors: a constant named like a secret or
taken from one is refused by validate, with the file, the line and what to do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support import Project, make_project

from integrator.config.load import load_app, load_flows
from integrator.errors import ConfigIssue, ConfigurationError
from integrator.pipeline.exchange import var_attributes
from integrator.sandbox import Sandbox

# The script shows the constants it sees in the ERP payload's `source` field (the mapping
# moves `source_system` there); the Jolt spec reads them from its context.
SCRIPT = """
import json


def process(data, attributes):
    seen = {k: v for k, v in attributes.items() if k.startswith("vars.")}
    data["source_system"] = json.dumps(seen, sort_keys=True)
    attributes["vars.warehouse"] = "changed by a script"  # this order's alone
    attributes["log.region"] = attributes.get("vars.region", "absent")
    return data
"""
JOLT_VARS = {
    "operation": "modify-overwrite-beta",
    "spec": {
        "warehouse": "^vars.warehouse",
        "payment_days": "^vars.terms.days",
        "channel": "=concat(^vars.channel_code, '-', @(1,order_number))",
        "first_tag": "^vars.tags[0]",
    },
}
PROJECT_VARS = """vars:
  warehouse: W-PROJECT          # the flow's own wins
  channel_code: WEB
  region: ${REGION:-eu}
  terms: {days: 30, net: true}
"""
FLOW_VARS = """vars:
  warehouse: W-FLOW
  tags: [gift, "çiçek"]
  empty:
"""


def with_constants(project: Project) -> None:
    """config.yaml and order_flow get constants; the script and the spec use them."""
    cfg = project.root / "config.yaml"
    cfg.write_text(
        cfg.read_text().replace("flows_dir: flows\n", "flows_dir: flows\n" + PROJECT_VARS)
    )
    project.edit_flow("stages:\n", FLOW_VARS + "stages:\n")
    (project.root / "scripts" / "enrich_order.py").write_text(SCRIPT)
    spec_file = project.root / "flows" / "specs" / "order_to_erp.json"
    spec = json.loads(spec_file.read_text())
    spec_file.write_text(json.dumps([*spec, JOLT_VARS]))


SEEN = {
    "vars.channel_code": "WEB",
    "vars.empty": "null",
    "vars.region": "eu",
    "vars.tags": '["gift","çiçek"]',
    "vars.terms": '{"days":30,"net":true}',
    "vars.warehouse": "W-FLOW",
}


def check_payload(body: dict[str, object], number: str) -> None:
    assert json.loads(str(body["source"])) == SEEN  # no other order's script changed them
    assert body["warehouse"] == "W-FLOW"  # ^vars: the constants, whatever a script did
    assert body["payment_days"] == 30
    assert body["channel"] == f"WEB-{number}"
    assert body["first_tag"] == "gift"


def test_a_run_gives_the_constants_to_scripts_and_jolt(project: Project, sandbox: Sandbox) -> None:
    with_constants(project)
    r = project.run("run-flow", "order_flow", "--limit", "6", "--no-progress")
    assert r.code == 0, r.out + r.err
    assert len(sandbox.erp.received) == 6
    for number in sandbox.erp.received:
        body = sandbox.erp.payload(number)
        assert body is not None
        check_payload(body, number)
    logged = project.sql("SELECT DISTINCT value FROM order_log WHERE key = 'log.region'")
    assert logged == [("eu",)]


def test_a_dry_run_and_test_flow_use_the_constants(project: Project, sandbox: Sandbox) -> None:
    with_constants(project)
    r = project.run("run-flow", "order_flow", "--dry-run", "--limit", "1", "--no-progress",
                    env={"REGION": "tr"})  # fmt: skip
    assert r.code == 0, r.out + r.err
    plans = [json.loads(line) for line in r.out.splitlines() if line.startswith("{")]
    writes = [p for p in plans if p["connector"] == "erp" and p["method"] == "POST"]
    assert len(writes) == 1
    seen = json.loads(writes[0]["body"]["source"])
    assert seen == {**SEEN, "vars.region": "tr"}
    check_payload({**writes[0]["body"], "source": json.dumps(SEEN)}, writes[0]["order"])
    assert sandbox.erp.received == {}

    order = project.root / "flows" / "tests" / "order_flow" / "with_discount.order.json"
    number = json.loads(order.read_text())["number"]
    r = project.run("test-flow", "order_flow", "--order", str(order),
                    "--attr", "vars.channel_code=FROM-ATTR")  # fmt: skip
    assert r.code == 0, r.out + r.err
    trace = json.loads(r.out)
    assert {k: v for k, v in trace["attributes"]["other"].items() if k.startswith("vars.")} == {
        **SEEN,
        "vars.channel_code": "FROM-ATTR",  # a recorded attribute wins over the constant
        "vars.warehouse": "changed by a script",
    }
    assert json.loads(trace["erp_request"]["source"])["vars.channel_code"] == "FROM-ATTR"
    assert trace["erp_request"]["warehouse"] == "W-FLOW"  # Jolt's context: the constants
    assert trace["erp_request"]["channel"] == f"WEB-{number}"


def test_the_workbench_takes_a_flows_constants(project: Project) -> None:
    with_constants(project)
    order = project.root / "flows" / "tests" / "order_flow" / "with_discount.order.json"
    script = str(project.root / "scripts" / "enrich_order.py")
    r = project.run("test-script", script, "--input", str(order), "--flow", "order_flow",
                    "--attr", "vars.channel_code=B2B")  # fmt: skip
    assert r.code == 0, r.out + r.err
    seen = json.loads(json.loads(r.out)["result_data"]["source_system"])
    assert seen == {**SEEN, "vars.channel_code": "B2B"}

    r = project.run("test-script", script, "--input", str(order))  # no --flow: none
    assert r.code == 0, r.out + r.err
    assert json.loads(r.out)["result_data"]["source_system"] == "{}"

    # The flow's other stages may be broken while a script is being fixed.
    project.edit_flow("spec: flows/specs/order_to_erp.json", "spec: flows/specs/missing.json")
    r = project.run("test-script", script, "--input", str(order), "--flow", "order_flow")
    assert r.code == 0, r.out + r.err

    spec = project.root / "flows" / "specs" / "vars.json"
    spec.write_text(json.dumps([JOLT_VARS]))
    ctx = project.root / "ctx.json"
    ctx.write_text(json.dumps({"attributes": {"x": "1"}}))
    r = project.run("test-mapping", str(spec), "--input", str(order), "--flow", "order_flow",
                    "--context", str(ctx))  # fmt: skip
    assert r.code == 0, r.out + r.err
    out = json.loads(r.out)
    assert (out["warehouse"], out["payment_days"], out["first_tag"]) == ("W-FLOW", 30, "gift")

    r = project.run("test-script", script, "--input", str(order), "--flow", "nope")
    assert r.code == 2
    assert "no flow named 'nope'" in r.err and "order_flow" in r.err, r.err


def test_an_unset_variable_in_a_constant_is_an_error_even_without_credentials(
    project: Project,
) -> None:
    """test-flow needs no credentials (unset secrets are tolerated), but a constant left empty
    by an unset variable would change the payload silently: it is an error there too."""
    project.edit_flow("stages:\n", "vars:\n  region: ${REGION}\nstages:\n")
    order = project.root / "flows" / "tests" / "order_flow" / "with_discount.order.json"
    r = project.run("test-flow", "order_flow", "--order", str(order))
    assert r.code == 2, r.out + r.err
    line = project.flow().read_text().splitlines().index("  region: ${REGION}") + 1
    assert f"order_flow.yaml:{line} [vars.region]: environment variable REGION is not set" in r.err
    r = project.run("test-flow", "order_flow", "--order", str(order), env={"REGION": "tr"})
    assert r.code == 0, r.out + r.err
    assert json.loads(r.out)["attributes"]["other"]["vars.region"] == "tr"


@pytest.mark.parametrize(
    ("where", "text", "key", "below", "says"),
    [  # `below`: lines below `vars:` where the problem is reported
        ("flow", "vars:\n  erp_password: ${ERP_TOKEN}\n", "vars.erp_password", 1, "like a secret"),
        ("flow", "vars:\n  ApiKey: abc\n", "vars.ApiKey", 1, "named like a secret"),
        ("flow", "vars:\n  auth:\n    token: ${X:-abcdefghij}\n", "vars.auth.token", 2, "secret"),
        ("config", "vars:\n  l: [{a: 1}, {Secret_Key: x}]\n", "vars.l[1].Secret_Key", 1, "secret"),
        ("flow", "vars:\n  code: ${ERP_TOKEN}\n", "vars.code", 1, "from ${ERP_TOKEN}, a secret"),
        ("config", "vars:\n  code: ${file:key.txt}\n", "vars.code", 1, "from ${file:key.txt}"),
        ("flow", "vars:\n  code: x-${SAME}\n", "vars.code", 1, "holds a secret of this project"),
        ("flow", "vars:\n  9lives: x\n", "vars.9lives", 1, "not a constant's name"),
        ("config", "vars:\n  a-b: x\n", "vars.a-b", 1, "not a constant's name"),
        ("flow", "vars: [a, b]\n", "vars", 0, "expected a mapping, got list"),
        ("flow", "vars: text\n", "vars", 0, "expected a mapping, got str"),
        ("flow", "vars:\n  n: .nan\n", "vars.n", 1, "expected a finite number"),
        ("flow", "vars:\n  at: 2026-11-01 10:00:00\n", "vars.at", 1, "quote it"),
        ("flow", "vars:\n  m: {1: x}\n", "vars.m.1", 1, "quote it"),
        ("flow", "vars:\n  x: 1\n  x: 2\n", "vars.x", 2, "duplicate key"),
        ("flow", "vars:\n  n: 'A-${_order.number}'\n", "vars.n", 1, "resolved at run time"),
        ("config", "vars:\n  a: x\n  b: ['${vars.a}']\n", "vars.b[0]", 2, "never in a constant"),
    ],
)
def test_validate_refuses_bad_constants(
    tmp_path: Path, sandbox: Sandbox, where: str, text: str, key: str, below: int, says: str
) -> None:
    token = sandbox.env()["ERP_TOKEN"]
    project = make_project(tmp_path, {**sandbox.env(), "SAME": token})
    (project.root / "key.txt").write_text("a-secret-from-a-file\n")
    if where == "flow":
        project.edit_flow("stages:\n", text + "stages:\n")
        file = project.flow()
    else:
        file = project.root / "config.yaml"
        file.write_text(file.read_text().replace("flows_dir: flows\n", "flows_dir: flows\n" + text))
    lines = file.read_text().splitlines()
    line = next(i for i, t in enumerate(lines, 1) if t.startswith("vars")) + below
    r = project.run("validate")
    assert r.code == 2, r.out + r.err
    shown = r.out + r.err
    assert f"{file.name}:{line} [{key}]" in shown and says in shown, shown
    if "secret" in says:
        assert "in a connector's Password" in shown, shown
    assert token not in shown and "a-secret-from-a-file" not in shown  # never echoed


def test_validate_says_nothing_of_a_constant_the_flow_overrides(project: Project) -> None:
    with_constants(project)
    r = project.run("validate")
    assert r.code == 0, r.out + r.err
    assert "vars" not in r.out + r.err and "warehouse" not in r.out + r.err


# ------------------------------------------------------------------------ unit tests
def _load(tmp_path: Path, config: str, flow: str) -> tuple[dict[str, Any], list[ConfigIssue]]:
    (tmp_path / "flows").mkdir()
    (tmp_path / "config.yaml").write_text(
        "connectors:\n  - {Name: erp, Host: 'http://127.0.0.1:1', BearerToken: '${T}'}\n"
        "  - {Name: omnitron, Host: 'http://127.0.0.1:2'}\n" + config
    )
    (tmp_path / "flows" / "f.yaml").write_text(flow + "stages: [read]\n")
    app = load_app(tmp_path / "config.yaml", {"T": "a-long-enough-token"})
    issues: list[ConfigIssue] = []
    flows = load_flows(app, issues)
    return flows[0].vars, issues


def test_constants_merge_flow_over_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODE", "C-7")
    merged, issues = _load(
        tmp_path,
        "vars: {a: 1, b: project, when: 2026-11-01, nested: {x: [1, {y: z}]}}\n",
        "vars: {b: flow, c: '${CODE}', erp_token_url: '${ERP_TOKEN_URL:-http://x}'}\n",
    )
    assert [str(i) for i in issues] == [
        f"{tmp_path / 'flows' / 'f.yaml'}:1 [vars.erp_token_url]: "
        "'erp_token_url' is named like a secret; secrets stay in "
        "connectors: put it in a connector's Password, BearerToken, "
        "ClientAppSecret or ConnectionString (from ${ENV_VAR} or "
        "${file:path}), or in a Properties or CustomHeaders entry of "
        "the connector. Not a secret? Rename it (what is named with "
        "password, secret, token, api_key... is masked where shown)"
    ]
    assert merged == {
        "a": 1,
        "b": "flow",
        "c": "C-7",
        "when": "2026-11-01",  # YAML's date, as the text written
        "nested": {"x": [1, {"y": "z"}]},
    }


def test_a_config_yaml_with_a_bad_constant_is_refused_at_load(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("connectors: []\nvars:\n  ok: 1\n  bad name: 2\n")
    with pytest.raises(ConfigurationError) as caught:
        load_app(tmp_path / "config.yaml", {})
    assert str(caught.value).endswith(
        ":4 [vars.bad name]: 'bad name' is not a constant's "
        "name: use letters, digits and _, not starting with a digit "
        "(it is written vars.NAME in templates, scripts and Jolt "
        "specs)"
    )


def test_var_attributes_are_text_or_json() -> None:
    assert var_attributes(
        {"s": "é", "i": 3, "f": 1.5, "b": True, "n": None, "l": [1, "a"], "m": {"k": [True]}}
    ) == {
        "vars.s": "é",
        "vars.i": "3",
        "vars.f": "1.5",
        "vars.b": "true",
        "vars.n": "null",
        "vars.l": '[1,"a"]',
        "vars.m": '{"k":[true]}',
    }


def test_a_jolt_output_never_shares_the_constants(tmp_path: Path) -> None:
    """jolt-py copies what it takes from the context: a later stage changing the output (a
    list, a mapping taken from ^vars) changes neither the constants nor the next order's."""
    from integrator.mapping.jolt import JoltMapping

    constants: dict[str, Any] = {"tags": ["a"], "terms": {"days": 30}}
    spec = [{"operation": "modify-overwrite-beta", "spec": {"t": "^vars.tags", "m": "^vars.terms"}}]
    mapping = JoltMapping(spec)
    first = mapping.apply({}, {"vars": constants})
    first["t"].append("changed")
    first["m"]["days"] = 0
    assert constants == {"tags": ["a"], "terms": {"days": 30}}
    assert mapping.apply({}, {"vars": constants}) == {"t": ["a"], "m": {"days": 30}}
