"""Bad input gets a clear error (file, line, key) and exit status 2; secrets never leak."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

from support import Project

from integrator.sandbox import CHANNEL_SECRET, Sandbox


def test_missing_env_var_names_the_key(project: Project) -> None:
    """An unset ${VAR} is an error naming the file, line, key and variable."""
    env = {k: v for k, v in {**os.environ, **project.env}.items() if k != "ERP_TOKEN"}
    p = subprocess.run(
        [sys.executable, "-m", "integrator", "run-flow", "order_flow"],
        cwd=project.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2
    assert "config.yaml:26 [connectors[1].BearerToken]" in p.stderr
    assert "ERP_TOKEN is not set" in p.stderr
    assert "Traceback" not in p.stderr


def test_bad_yaml_reports_file_and_line(project: Project) -> None:
    """A YAML syntax error names the flow file and line; exit 2."""
    path = project.flow()
    path.write_text(path.read_text().replace("  - mark_sent\n", "  - mark_sent\n   bad: [\n"))
    r = project.run("validate")
    assert r.code == 2
    assert "order_flow.yaml:" in r.err and "invalid YAML" in r.err
    assert "Traceback" not in r.err


def test_bad_jolt_spec_reports_file_and_operation_index(project: Project) -> None:
    """A malformed spec names the spec file, the flow key and the operation index."""
    spec = project.root / "flows" / "specs" / "order_to_erp.json"
    chain = json.loads(spec.read_text())
    chain.append({"operation": "shift", "spec": {"a": {"@": ["x", 3]}}})
    chain.append({"operation": "no-such-op"})
    spec.write_text(json.dumps(chain))
    r = project.run("run-flow", "order_flow")
    assert r.code == 2
    assert "stages[4].mapping.spec" in r.err
    assert "order_to_erp.json" in r.err and "operation [" in r.err


def test_empty_chain_is_an_error(project: Project) -> None:
    """An empty Jolt chain is refused at validate."""
    (project.root / "flows" / "specs" / "order_to_erp.json").write_text("[]")
    r = project.run("validate")
    assert r.code == 2 and "empty" in r.err


def test_unknown_modify_function_is_a_warning(project: Project) -> None:
    """validate warns, naming the file and the function; the flow stays valid."""
    spec = project.root / "flows" / "specs" / "order_to_erp.json"
    chain = json.loads(spec.read_text())
    chain.append({"operation": "modify-overwrite-beta", "spec": {"x": "=frobnicate(@(1,a))"}})
    spec.write_text(json.dumps(chain))
    r = project.run("validate")
    assert r.code == 0, r.err
    assert "order_to_erp.json" in r.out and "'frobnicate'" in r.out


def test_validate_reports_every_error_at_once(project: Project) -> None:
    """Unknown options, wrong types, a missing script: all in one report."""
    project.edit_flow("concurrency: 4", "concurrency: many\nfrobs: 1")
    project.edit_flow("page_size: 50", "page_size: 50\n      colour: blue")
    project.edit_flow("path: scripts/enrich_order.py", "path: scripts/missing.py")
    r = project.run("validate")
    assert r.code == 2
    assert "[concurrency]: expected an integer, got str" in r.err
    assert "[frobs]: unknown option" in r.err
    assert "[stages[1].read.colour]: unknown option 'colour'" in r.err
    assert "scripts/missing.py not found" in r.err


def test_secret_in_clear_is_refused(project: Project) -> None:
    """A password written in clear in config.yaml is an error naming the key."""
    cfg = project.root / "config.yaml"
    cfg.write_text(cfg.read_text().replace("${OMNITRON_PASSWORD}", "hunter22"))
    r = project.run("validate")
    assert r.code == 2 and "[connectors[0].Password]: secret written in clear" in r.err


def test_custom_stage_by_module_path(project: Project, sandbox: Sandbox) -> None:
    """A flow inserts its own stage as package.module:Class."""
    (project.root / "mystages.py").write_text(
        "from integrator.pipeline import Stage\n\n"
        "class Tag(Stage):\n"
        "    name = 'tag'\n"
        "    def process(self, ex):\n"
        "        ex.attributes['log.tagged'] = ex.number\n"
    )
    project.edit_flow("  - check_response\n", "  - check_response\n  - mystages:Tag\n")
    r = project.run(
        "run-flow",
        "order_flow",
        "--no-progress",
        "--limit",
        "1",
        env={"PYTHONPATH": str(project.root)},
    )
    assert r.code == 0, r.err
    assert project.sql("SELECT COUNT(*) FROM order_log WHERE key='log.tagged'") == [(1,)]


def test_secrets_never_leak(project: Project, sandbox: Sandbox) -> None:
    """Config secrets, the login token and channel.conf secrets stay out of output, logs,
    the store and the ERP payload."""
    numbers = [
        o["number"]
        for o in sandbox.omnitron.orders.values()
        if not o["is_send"] and o["status"] == "400"
    ]
    project.forward_channel_conf()
    r = project.run("run-flow", "order_flow", "--no-progress")
    assert r.code == 0, r.err
    secrets = [
        CHANNEL_SECRET,
        sandbox.credentials["OMNITRON_PASSWORD"],
        sandbox.credentials["ERP_TOKEN"],
        *sandbox.omnitron.tokens,
    ]
    texts = [r.out, r.err]
    texts += [p.read_text() for p in (project.root / "logs").rglob("*") if p.is_file()]
    with sqlite3.connect(project.root / "state" / "integrator.db") as c:
        for (table,) in c.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            texts.append(json.dumps(list(c.execute(f"SELECT * FROM {table}")), default=str))
    texts += [json.dumps(sandbox.erp.payload(n)) for n in numbers]
    assert "***" in "".join(texts)  # the conf was there, masked
    for secret in secrets:
        assert all(secret not in t for t in texts), "a secret leaked"
