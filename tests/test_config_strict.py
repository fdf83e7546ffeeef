"""Config that cannot lie: ``integrator validate`` refuses what would be read wrongly, in one
pass over config.yaml and every flow, each problem with its file, line, key and what to do.

Unit tests for the loader (duplicate keys, alias bombs, encodings, interpolation, templates),
then the CLI in a temp project against the sandbox."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import Project, fault_rule, make_project, stats, unsent

from integrator.config.checks import Options
from integrator.config.interpolate import interpolate
from integrator.config.yamlfile import read_yaml
from integrator.errors import ConfigIssue
from integrator.sandbox import SANDBOX_ENV, Sandbox

# A classic "billion laughs": 9 levels of 9 aliases, 10⁹ strings once expanded (~700 bytes).
LAUGHS = "lol0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10)
)


def write(tmp_path: Path, text: str | bytes, name: str = "f.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text))
    return path


def messages(issues: list[ConfigIssue]) -> str:
    return "\n".join(str(i) for i in issues)


# ------------------------------------------------------------------------- the YAML reader
def test_duplicate_keys_are_refused_with_both_lines(tmp_path: Path) -> None:
    """PyYAML keeps the last of two equal keys; the reader names both, and keeps reading."""
    doc, issues = read_yaml(
        write(
            tmp_path,
            """\
            name: a
            stages:
              - write:
                  path: /api/orders/
                  method: POST
                  path: /api/other/
            name: b
            """,
        )
    )
    assert doc is not None  # the rest of the file is still checked
    text = messages(issues)
    assert len(issues) == 2, text
    assert "f.yaml:6 [stages[0].write.path]: duplicate key 'path' (first at line 4)" in text
    assert "f.yaml:7 [name]: duplicate key 'name' (first at line 1)" in text


def test_merge_keys_and_anchors_are_not_duplicates(tmp_path: Path) -> None:
    """``<<: *base`` then an explicit key overrides on purpose; anchors are allowed."""
    doc, issues = read_yaml(
        write(
            tmp_path,
            """\
            base: &base {Timeout: 30, Retry: {Attempts: 3}}
            a:
              <<: *base
              Timeout: 10
            b: *base
            """,
        )
    )
    assert issues == [] and doc is not None
    assert doc.data["a"] == {"Timeout": 10, "Retry": {"Attempts": 3}}
    assert doc.data["b"]["Timeout"] == 30


def test_billion_laughs_ends_fast_with_a_clear_error_in_bounded_memory(tmp_path: Path) -> None:
    """Checked in a child with a 1 GiB address-space limit and a deadline: before the bound,
    the reader's own walk over the expanded tree never ended."""
    path = write(tmp_path, LAUGHS)
    code = (
        "import resource, sys, time\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from pathlib import Path\n"
        "from integrator.config.yamlfile import read_yaml\n"
        "t = time.monotonic()\n"
        f"doc, issues = read_yaml(Path({str(path)!r}))\n"
        "print(time.monotonic() - t)\n"
        "print(doc is None, *issues, sep='\\n')\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert p.returncode == 0, p.stderr[-2000:]
    elapsed, refused, issue = p.stdout.splitlines()[:3]
    assert float(elapsed) < 2.0
    assert refused == "True"
    assert "f.yaml:5: with its aliases expanded, this document has more than 50000 nodes" in issue
    # In this process too: the memory it takes is that of the small file, not of its expansion.
    tracemalloc.start()
    read_yaml(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 * 2**20


def test_alias_cycles_and_deep_nesting_are_refused(tmp_path: Path) -> None:
    _doc, issues = read_yaml(write(tmp_path, "a: &a [1, *a]\n"))
    assert "f.yaml:1: an alias refers to a node that contains it (a cycle)" in messages(issues)
    _doc, issues = read_yaml(write(tmp_path, "a: " + "[" * 2000 + "]" * 2000 + "\n"))
    assert "nested" in messages(issues) and len(issues) == 1
    # 70 levels built from aliases of small nodes: deep only once expanded.
    chain = "l0: &l0 [x]\n" + "".join(f"l{i}: &l{i} [*l{i - 1}]\n" for i in range(1, 70))
    _doc, issues = read_yaml(write(tmp_path, chain))
    assert "nested more than 64 deep" in messages(issues)


def test_a_file_that_is_not_utf8_is_named_with_its_byte_offset(tmp_path: Path) -> None:
    _doc, issues = read_yaml(write(tmp_path, b"name: a\ndescription: caf\xe9 au lait\n"))
    assert [str(i) for i in issues] == [
        f"{tmp_path}/f.yaml:2: not UTF-8: byte 0xe9 at byte offset 24 cannot be decoded "
        "(invalid continuation byte); save the file as UTF-8"
    ]
    # A UTF-16 file (what some editors save) too; a UTF-8 byte order mark is fine.
    _doc, issues = read_yaml(write(tmp_path, "name: a\n".encode("utf-16")))
    assert "not UTF-8: byte 0xff at byte offset 0" in messages(issues)
    doc, issues = read_yaml(write(tmp_path, "\ufeffname: å\n".encode()))
    assert issues == [] and doc is not None and doc.data == {"name": "å"}


# ------------------------------------------------------------------------- interpolation
def interp(tmp_path: Path, text: str, env: dict[str, str], *, lenient: bool = False) -> Any:
    doc, issues = read_yaml(write(tmp_path, text))
    assert doc is not None and not issues
    secrets: set[str] = set()
    data = interpolate(doc, env, issues, secrets, tmp_path, lenient=lenient)
    return data, issues, secrets


def test_a_default_on_a_secret_is_refused(tmp_path: Path) -> None:
    text = """\
        Host: ${ERP_URL:-http://127.0.0.1:8702}
        BearerToken: ${ERP_TOKEN:-letmein-please}
        Properties:
          - {Key: X-Api-Key, Value: "${API_KEY:-0123456789}"}
          - {Key: X-Shop, Value: "${SHOP:-main}"}
        """
    data, issues, secrets = interp(tmp_path, text, {"ERP_TOKEN": "set-in-the-environment"})
    text_issues = messages(issues)
    assert "f.yaml:2 [BearerToken]: a secret cannot have a default (${ERP_TOKEN:-...})" in (
        text_issues
    )
    assert "[Properties[0].Value]: a secret cannot have a default (${API_KEY:-...})" in text_issues
    assert len(issues) == 3  # and API_KEY, without its default, is not set
    assert "letmein-please" not in text_issues and "0123456789" not in text_issues
    assert data["Host"] == "http://127.0.0.1:8702" and data["Properties"][1]["Value"] == "main"
    assert secrets == {"set-in-the-environment"}


def test_a_short_secret_is_refused_unless_secrets_are_not_needed(tmp_path: Path) -> None:
    text = "Password: ${PW}\nevents: {secret: '${file:hook.txt}'}\nUsername: ${USER_NAME}\n"
    (tmp_path / "hook.txt").write_text("abc12\n")
    env = {"PW": "hunter2", "USER_NAME": "bob"}
    _data, issues, secrets = interp(tmp_path, text, env)
    assert [i.key for i in issues] == ["Password", "events.secret"]
    assert "the secret from PW has 7 characters; use at least 8" in messages(issues)
    assert "the secret from file hook.txt has 5 characters" in messages(issues)
    assert "hunter2" not in messages(issues)
    assert secrets == {"hunter2", "abc12"}  # known to the redactor all the same
    _data, issues, _secrets = interp(tmp_path, text, env, lenient=True)
    assert issues == []


def test_a_secret_used_where_the_key_is_not_a_secret_is_still_known(tmp_path: Path) -> None:
    """A variable named like a secret, or a secret file, in a write path or a URL: the
    redactor learns its value (a dry run showed it in the URL). Short values and names that
    are a secret's place (TOKEN_URL) are not learned."""
    text = """\
        path: /api/orders/${ERP_CLIENT_SECRET}/
        url: /q?n=1&k=${file:key.txt}
        flag: ${USE_TOKEN}
        login: ${OMNITRON_TOKEN_URL}
        """
    (tmp_path / "key.txt").write_text("file-held-key-123\n")
    env = {
        "ERP_CLIENT_SECRET": "sandbox-client-secret",
        "USE_TOKEN": "true",
        "OMNITRON_TOKEN_URL": "http://127.0.0.1:8701/token/",
    }
    data, issues, secrets = interp(tmp_path, text, env)
    assert issues == []
    assert data["path"] == "/api/orders/sandbox-client-secret/"  # used as it is
    assert secrets == {"sandbox-client-secret", "file-held-key-123"}


def test_a_secret_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    (tmp_path / "token.bin").write_bytes(b"\x80\x81secret-bytes")
    _data, issues, _secrets = interp(tmp_path, "BearerToken: ${file:token.bin}\n", {})
    assert "[BearerToken]: secret file " in messages(issues)
    assert "not UTF-8: byte 0x80 at byte offset 0" in messages(issues)


# ------------------------------------------------------------------------- numbers
@pytest.mark.parametrize("raw", [".inf", "-.inf", ".nan", ".NaN", "1.0e+999"])
def test_infinite_and_nan_numbers_are_refused(tmp_path: Path, raw: str) -> None:
    doc, _ = read_yaml(write(tmp_path, f"Timeout: {raw}\n"))
    assert doc is not None
    issues: list[ConfigIssue] = []
    value = Options(doc.data, doc, "", issues, {"Timeout"}).get(
        "Timeout", float, 30.0, check=lambda v: None if v >= 0 else "expected 0 or more"
    )
    assert value == 30.0
    assert "f.yaml:1 [Timeout]: expected a finite number" in messages(issues)


# ------------------------------------------------------------------------- templates
ORDER = {
    "number": "A&1",
    "cargo": None,
    "items": [{"sku": "S1", "tags": []}, {"sku": "S2"}],
    "extra": {"note": ""},
}


def test_template_values_defaults_and_failures() -> None:
    from integrator.mapping.expr import Scope, TemplateError, render, render_value, url_escape

    sc = Scope(ORDER, {"erp.reference": "ERP-1"})
    assert render("/o/${_order.number}", sc, escape=url_escape) == "/o/A%261"
    assert render("${_order.items[-1].sku}/${erp.reference}", sc) == "S2/ERP-1"
    assert render("${_order.extra.note}", sc) == ""  # an empty string is a value
    # Absent or null: the default, when there is one (`:-` empty, or a text)...
    assert render("x${_order.nope:-}y", sc) == "xy"
    assert render("${_order.cargo:-N/A}", sc, escape=url_escape) == "N%2FA"
    assert render("${_order.cargo.name:-none}", sc) == "none"  # null on the way
    assert render("${_order.items[5].sku:-none}", sc) == "none"
    assert render("${missing:-d}", sc) == "d"
    assert render_value({"n": "${_order.items[0].tags}"}, sc) == {"n": []}
    assert render_value("${_order.cargo:-}", sc) == ""
    # ... else the order fails, naming the variable.
    for template, what in [
        ("/o/${_order.nope}", "${_order.nope} is absent from the order"),
        ("${_order.items[5].sku}", "${_order.items[5].sku} is absent from the order"),
        ("${_order.number.x}", "${_order.number.x} is absent from the order"),
        ("${_order.cargo}", "${_order.cargo} is null in the order"),
        ("${_order.cargo.name}", "${_order.cargo.name} is null in the order"),
        ("${erp.nope}", "${erp.nope} is not an attribute"),
    ]:
        with pytest.raises(TemplateError) as err:
            render(template, sc)
        assert what in str(err.value) and "${" in str(err.value)
        with pytest.raises(TemplateError):
            render_value({"body": [template]}, sc)
    # `:-` inside brackets is a slice, not a default.
    assert render("${_order.items[::-1] | [0].sku}", sc) == "S2"


def test_shape_check_accepts_a_path_of_any_known_sample() -> None:
    from integrator.mapping.paths import simple_steps
    from integrator.pipeline.flowcheck import shape_has
    from integrator.stages.omnitron_shape import omnitron_samples

    samples = omnitron_samples()

    def known(path: str) -> bool:
        steps = simple_steps(path)
        assert steps is not None
        return any(shape_has(steps, s) for s in samples)

    for path in (
        "number",
        "orderitem_set[7].product.sku",  # which index exists is data, not shape
        "orderitem_set[0].shipping_company.name",  # null in the samples: cannot tell
        "extra_field.erp_code",  # free-form
        "customer.date_joined",  # in the API reference, not in the sandbox
        "discountitem_set[0].promotion.slug",
        "shipping_address.city.name",
    ):
        assert known(path), path
    for path in ("nope", "number.x", "orderitem_set[0].nah", "customer.erp_code.x", "pk[0]"):
        assert not known(path), path
    assert simple_steps("length(orderitem_set)") is None


# ------------------------------------------------------------------------- the CLI
def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_validate_lists_config_and_flow_problems_together(project: Project) -> None:
    """One pass: problems of config.yaml do not hide those of the flows."""
    cfg = project.root / "config.yaml"
    edit(cfg, "    Timeout: 30\n  - Name: erp", "    Timeout: .inf\n  - Name: erp")
    edit(cfg, "BearerToken: ${ERP_TOKEN}", "BearerToken: ${ERP_TOKEN:-changeme-token}")
    edit(cfg, "  level: INFO\n", "  level: INFO\n  level: DEBUG\n")
    flow = project.flow()
    edit(flow, "max_attempts: 5", "max_attempts: 5\nsettle_seconds: -3")
    edit(flow, "number=${_order.number}", "number=${_order.numbr}")
    edit(flow, "  - write:\n      path: /api/orders/\n      method: POST\n", "")
    edit(project.flow("order_status"), "  every: 5m", "  triggered_by: order_sync")
    r = project.run("validate")
    assert r.code == 2 and "Traceback" not in r.err
    expected = [
        "config.yaml:8 [logging.level]: duplicate key 'level' (first at line 7)",
        "config.yaml:22 [connectors[0].Timeout]: expected a finite number, got inf",
        "config.yaml:27 [connectors[1].BearerToken]: a secret cannot have a default",
        "order_flow.yaml:11 [settle_seconds]: expected 0 or more",
        "order_flow.yaml:18 [stages[2].query_check.url]: ${_order.numbr}: the order has no 'numbr'",
        "order_flow.yaml:29 [stages[6]]: stage 'mark_sent' marks the order in the source, but "
        "no stage before it delivers",
        "order_status.yaml:8 [schedule.triggered_by]: no flow named 'order_sync'",
    ]
    for line in expected:
        assert line in r.err, f"{line}\n---\n{r.err}"
    assert "changeme-token" not in r.err
    assert f"configuration errors ({len(expected)})" in r.err


def flow_edit(name: str, old: str, new: str) -> Any:
    def apply(p: Project) -> None:
        edit(p.flow(name), old, new)

    return apply


def both(*edits: Callable[[Project], None]) -> Callable[[Project], None]:
    def apply(p: Project) -> None:
        for e in edits:
            e(p)

    return apply


def config_edit(old: str, new: str) -> Any:
    def apply(p: Project) -> None:
        edit(p.root / "config.yaml", old, new)

    return apply


def spec_bytes(data: bytes) -> Any:
    def apply(p: Project) -> None:
        (p.root / "flows" / "specs" / "order_to_erp.json").write_bytes(data)

    return apply


REFUSALS = {
    "duplicate key in a flow": (
        flow_edit("order_flow", "      method: POST\n", "      method: POST\n      method: PUT\n"),
        "order_flow.yaml:30 [stages[5].write.method]: duplicate key 'method' (first at line 29)",
    ),
    "alias bomb in config.yaml": (
        lambda p: (p.root / "config.yaml").write_text(
            (p.root / "config.yaml").read_text() + LAUGHS.replace("lol", "x_lol")
        ),
        "with its aliases expanded, this document has more than 50000 nodes",
    ),
    "alias bomb in a flow": (
        lambda p: p.flow().write_text(p.flow().read_text() + LAUGHS),
        "order_flow.yaml:48: with its aliases expanded",
    ),
    "config.yaml not UTF-8": (
        lambda p: (p.root / "config.yaml").write_bytes(
            (p.root / "config.yaml").read_bytes().replace(b"ERP (sandbox)", b"ERP (sandbox\xe9)")
        ),
        "config.yaml:24: not UTF-8: byte 0xe9 at byte offset",
    ),
    "flow not UTF-8": (
        lambda p: p.flow().write_bytes(p.flow().read_bytes().replace(b"exactly", b"\xff")),
        "order_flow.yaml:1: not UTF-8: byte 0xff at byte offset 70",
    ),
    "Jolt spec not UTF-8": (
        spec_bytes(b'[{"operation": "shift", "spec": {"a": "\xe9"}}]'),
        "[stages[4].mapping.spec]: Jolt spec ",
    ),
    "duplicate key in a Jolt spec": (
        spec_bytes(b'[{"operation": "shift", "spec": {"a": "x", "a": "y"}}]'),
        "order_to_erp.json: duplicate key 'a' in one object",
    ),
    "mark without a delivering stage": (
        flow_edit("order_flow", "  - write:\n      path: /api/orders/\n      method: POST\n", ""),
        "[stages[6]]: stage 'mark_sent' marks the order in the source, but no stage before it "
        "delivers the order (write or export)",
    ),
    "mark before the write": (
        flow_edit(
            "order_flow",
            "  - write:\n      path: /api/orders/\n      method: POST\n  - check_response\n"
            "  - mark_sent\n",
            "  - mark_sent\n  - write:\n      path: /api/orders/\n  - check_response\n",
        ),
        "order_flow.yaml:27 [stages[5]]: stage 'mark_sent' marks the order in the source before "
        "'write' (stages[6].write) writes it",
    ),
    "source not first": (
        flow_edit(
            "order_flow",
            "  - login\n  - read:",
            "  - login\n  - script:\n      path: scripts/enrich_order.py\n  - read:",
        ),
        "[stages[1].script]: stage 'script' comes before the source stage 'read' (stages[2].read)",
    ),
    "triggered_by itself": (
        flow_edit("order_status", "  every: 5m", "  triggered_by: order_status"),
        "order_status.yaml:8 [schedule.triggered_by]: a flow cannot be triggered by itself",
    ),
    "triggered_by a missing flow": (
        flow_edit("order_status", "  every: 5m", "  triggered_by: order_flw"),
        "[schedule.triggered_by]: no flow named 'order_flw'",
    ),
    "triggered_by in a circle": (
        both(
            flow_edit("order_status", "  every: 5m", "  triggered_by: order_flow"),
            flow_edit("order_flow", '  cron: "*/5 * * * *"', "  triggered_by: order_status"),
        ),
        "flows trigger each other in a circle (order_flow → order_status → order_flow)",
    ),
    "infinite connector Timeout": (
        config_edit("    Timeout: 30\n  - Name: erp", "    Timeout: .inf\n  - Name: erp"),
        "config.yaml:21 [connectors[0].Timeout]: expected a finite number, got inf",
    ),
    "negative connector Timeout": (
        config_edit("    Timeout: 30\n  - Name: erp", "    Timeout: -1\n  - Name: erp"),
        "config.yaml:21 [connectors[0].Timeout]: expected a number of seconds above 0",
    ),
    "infinite settle_seconds": (
        flow_edit("order_flow", "max_attempts: 5", "max_attempts: 5\nsettle_seconds: .inf"),
        "order_flow.yaml:11 [settle_seconds]: expected a finite number, got inf",
    ),
    "NaN script timeout": (
        flow_edit(
            "order_flow",
            "path: scripts/enrich_order.py",
            "path: scripts/enrich_order.py\n      timeout: .nan",
        ),
        "[stages[3].script.timeout]: expected a finite number, got nan",
    ),
    "infinite retry cap": (
        config_edit(
            "    Timeout: 30\n  - Name: erp", "    Retry: {CapSeconds: .inf}\n  - Name: erp"
        ),
        "[connectors[0].Retry.CapSeconds]: expected a finite number, got inf",
    ),
    "a default on a secret": (
        config_edit("${OMNITRON_PASSWORD}", "${OMNITRON_PASSWORD:-sandbox-pass}"),
        "config.yaml:16 [connectors[0].Password]: a secret cannot have a default",
    ),
    "a short secret": (
        lambda p: p.env.update(ERP_TOKEN="t0ken"),
        "config.yaml:26 [connectors[1].BearerToken]: the secret from ERP_TOKEN has 5 characters",
    ),
    "a path the order does not have": (
        flow_edit("order_flow", "number=${_order.number}", "number=${_order.nope}"),
        "order_flow.yaml:17 [stages[2].query_check.url]: ${_order.nope}: the order has no 'nope'",
    ),
    "a path the golden case does not have": (
        flow_edit(
            "order_status",
            "path: /api/i1/order_items/bulk_status_update/",
            "path: /api/i1/order_items/${_order.line_id}/",
        ),
        "order_status.yaml:23 [stages[4].write.path]: ${_order.line_id}: the order has no "
        "'line_id' (checked against 1 golden case(s)",
    ),
    "a path that does not compile": (
        flow_edit("order_flow", "number=${_order.number}", "number=${_order.number[}"),
        "[stages[2].query_check.url]: ${_order.number[}: invalid expression "
        "'_order.number[': incomplete",
    ),
    "a header a stage sends with text HTTP cannot carry": (
        flow_edit(
            "order_flow",
            "      path: /api/orders/\n",
            "      path: /api/orders/\n      headers: {X-Company: 'Şirket ${_order.number}'}\n",
        ),
        "[stages[5].write.headers]: header 'X-Company': character U+015E",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_validate_refuses(project: Project, case: str) -> None:
    change, expected = REFUSALS[case]
    change(project)
    started = time.monotonic()
    r = project.run("validate", timeout=60)
    assert r.code == 2, r.out + r.err
    assert expected in r.err, r.err
    assert "Traceback" not in r.err
    assert time.monotonic() - started < 30


def test_omnium_flows_are_checked_too(tmp_path: Path) -> None:
    """The Omnium project: a mark before the write, named in its own flow file."""
    p = make_project(tmp_path, dict(SANDBOX_ENV))
    edit(
        p.root / "flows" / "omnium" / "flows" / "omnium_order_flow.yaml",
        "  - write:\n      path: /api/orders/\n      method: POST\n  - check_response\n"
        "  - omnium_mark:\n      status: InProgress\n",
        "  - omnium_mark:\n      status: InProgress\n  - write:\n      path: /api/orders/\n",
    )
    r = p.run("-c", "flows/omnium/config.yaml", "validate")
    assert r.code == 2, r.out + r.err
    assert (
        "omnium_order_flow.yaml:26 [stages[4].omnium_mark]: stage 'omnium_mark' marks the order "
        "in the source before 'write' (stages[5].write) writes it"
    ) in r.err


@pytest.mark.parametrize("config", ["config.yaml", "flows/omnium/config.yaml"])
def test_shipped_projects_validate(tmp_path: Path, config: str) -> None:
    p = make_project(tmp_path, dict(SANDBOX_ENV))
    r = p.run("-c", config, "validate")
    assert r.code == 0, r.out + r.err
    assert "warning" not in r.out


def test_settle_seconds_shorter_than_the_target_timeout_is_a_warning(project: Project) -> None:
    project.edit_flow("max_attempts: 5", "max_attempts: 5\nsettle_seconds: 5")
    r = project.run("validate")
    assert r.code == 0, r.err
    assert (
        "order_flow.yaml:11 [settle_seconds]: 5 s is shorter than the Timeout of the target "
        "connector 'erp' (30 s)"
    ) in r.out
    project.edit_flow("settle_seconds: 5", "settle_seconds: 30")
    assert "[settle_seconds]" not in project.run("validate").out


def test_capabilities_decide_the_stage_order_not_names(project: Project) -> None:
    """A custom stage that delivers lets a mark follow it; a custom mark needs a delivery."""
    (project.root / "mystages.py").write_text(
        "from integrator.pipeline import Stage\n\n"
        "class Deliver(Stage):\n"
        "    name = 'deliver'\n"
        "    delivers = True\n"
        "    def process(self, ex):\n"
        "        pass\n\n"
        "class Mark(Stage):\n"
        "    name = 'mark'\n"
        "    marks = True\n"
        "    def process(self, ex):\n"
        "        pass\n"
    )
    env = {"PYTHONPATH": os.pathsep.join([str(project.root), os.environ.get("PYTHONPATH", "")])}
    write_step = "  - write:\n      path: /api/orders/\n      method: POST\n"
    project.edit_flow(write_step, "  - mystages:Deliver\n")
    r = project.run("validate", env=env)
    assert r.code == 0, r.err
    project.edit_flow("  - mystages:Deliver\n", "")
    project.edit_flow("  - mark_sent\n", "  - mystages:Mark\n")
    r = project.run("validate", env=env)
    assert r.code == 2
    assert "stage 'mystages:Mark' marks the order in the source, but no stage" in r.err


def test_an_absent_template_variable_fails_the_order_before_anything_is_sent(
    project: Project, sandbox: Sandbox
) -> None:
    """A path validate cannot refuse (extra_field is free-form) and the orders lack: each order
    fails naming the variable, nothing reaches the ERP, nothing is marked sent."""
    numbers = unsent(sandbox)
    project.edit_flow("max_attempts: 5", "max_attempts: 5\nbackoff_seconds: 0")
    project.edit_flow(
        "      path: /api/orders/\n", "      path: /api/orders/?ref=${_order.extra_field.ref}\n"
    )
    assert project.run("validate").code == 0
    r = project.run("run-flow", "order_flow", "--no-progress")
    assert r.code == 1, r.out + r.err
    assert stats(sandbox.erp.url)["received"] == 0
    marked = [o["number"] for o in sandbox.omnitron.orders.values() if o["is_send"]]
    assert not set(marked) & set(numbers)
    assert {project.state(n) for n in numbers} == {"failed"}
    show = project.run("orders", "show", numbers[0])
    assert "${_order.extra_field.ref} is absent from the order" in show.out
    # With a default, the orders go.
    project.edit_flow("${_order.extra_field.ref}", "${_order.extra_field.ref:-}")
    r = project.run("run-flow", "order_flow", "--no-progress")
    assert r.code == 0, r.out + r.err
    assert stats(sandbox.erp.url)["received"] == len(numbers)


def test_a_null_renders_its_default(project: Project, sandbox: Sandbox) -> None:
    """shipping_company is null in the sandbox's items: ``:-N/A`` gives N/A (dry run)."""
    project.edit_flow(
        "      path: /api/orders/\n",
        "      path: /api/orders/?cargo=${_order.orderitem_set[0].shipping_company:-N/A}\n",
    )
    r = project.run("run-flow", "order_flow", "--dry-run", "--limit", "1")
    assert r.code == 0, r.out + r.err
    posts = [json.loads(line) for line in r.out.splitlines() if line.startswith("{")]
    urls = [p["url"] for p in posts if p["method"] == "POST"]
    assert len(urls) == 1 and urls[0].endswith("/api/orders/?cargo=N%2FA"), urls


FLOW_TOKEN = "flow-file-token-5b1e9a"


def test_a_secret_from_a_flow_file_is_masked_everywhere(project: Project, sandbox: Sandbox) -> None:
    """query_check sends a token from the flow file; the ERP echoes it in an error body. The
    token is as secret as config.yaml's: masked in output, logs and the store."""
    numbers = unsent(sandbox)
    project.env["FLOW_TOKEN"] = FLOW_TOKEN
    project.edit_flow(
        "      method: GET\n      response_path: count",
        "      method: GET\n      body: {auth_token: '${FLOW_TOKEN}'}\n      response_path: count",
    )
    fault_rule(
        sandbox.erp.url,
        action="body",
        route="create",
        status=400,
        body=json.dumps({"detail": f"unknown order; your key was {FLOW_TOKEN}"}),
        numbers=[numbers[0]],
    )
    outputs = []
    for args in (
        ("validate",),
        ("run-flow", "order_flow", "--no-progress"),
        ("runs",),
        ("orders", "show", numbers[0]),
    ):
        r = project.run(*args)
        outputs += [r.out, r.err]
    outputs += [p.read_text() for p in (project.root / "logs").rglob("*") if p.is_file()]
    outputs.append(json.dumps(project.sql("SELECT * FROM journal"), default=str))
    outputs.append(json.dumps(project.sql("SELECT * FROM events"), default=str))
    assert "unknown order; your key was ***" in "".join(outputs)
    assert all(FLOW_TOKEN not in t for t in outputs)
