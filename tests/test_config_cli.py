"""Bad input gets a clear error (file, line, key) and exit status 2; secrets never leak."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from support import Project, fresh_python, make_project

from integrator.sandbox import CHANNEL_SECRET, SANDBOX_ENV, Sandbox


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


# ------------------------------------------------------------ exporters own their options
# Four queue connectors, each lacking what its exporter needs (config.yaml lines 50 to 65).
QUEUES_LACKING = """  - Name: RabbitMQ
    Host: amqp://127.0.0.1:5672/%2F
    Properties: [{Key: queue, Value: orders}]
  - Name: AzureStorageQueue
    Host: http://127.0.0.1:10001/devstoreaccount1
    Properties:
      - Key: Base64
        Value: "true"
  - Name: AzureServiceBus
    Host: https://ns.servicebus.windows.net
    Properties: [{Key: QueueName, Value: q}, {Key: TopicName, Value: t}]
  - Name: Kafka
    Host: http://127.0.0.1:9092
    Properties: [{Key: Message, Value: Everything}]
"""
QUEUE_STEPS = "".join(
    f"  - export: {{Connector: {n}}}\n"
    for n in ("RabbitMQ", "AzureStorageQueue", "AzureServiceBus", "Kafka")
)


def offline_project(tmp_path: Path) -> Project:
    """The project with the sandbox's variables, and no server (nothing here calls out)."""
    return make_project(tmp_path, dict(SANDBOX_ENV))


def with_queues(project: Project, connectors: str, steps: str = QUEUE_STEPS) -> int:
    """``connectors`` appended to config.yaml, the export ``steps`` before post_script; the
    line of the first connector added."""
    cfg = project.root / "config.yaml"
    text = cfg.read_text()
    cfg.write_text(text + connectors)
    project.edit_flow("  - post_script:\n", steps + "  - post_script:\n")
    return text.count("\n") + 1


def test_validate_reports_what_each_queue_exporter_lacks(tmp_path: Path) -> None:
    """A missing Queue, QueueName, ConnectionString or Topic was found at the first order;
    validate finds them all, on config.yaml's keys and lines, and a run does not start."""
    project = offline_project(tmp_path)
    first = with_queues(project, QUEUES_LACKING)
    r = project.run("validate")
    assert r.code == 2, r.out + r.err
    rabbit, azq, sb, kafka = 2, 3, 4, 5  # connectors[i], after omnitron and erp
    expected = [
        f"config.yaml:{first + 2} [connectors[{rabbit}].Properties]: RabbitMQ: set the Queue "
        "property (the queue to publish to, or Exchange and RoutingKey); found 'queue': "
        "property keys are case-sensitive",
        f"config.yaml:{first + 5} [connectors[{azq}].Properties]: AzureStorageQueue: set the "
        "QueueName property (the queue to send to, lowercase)",
        f"config.yaml:{first + 3} [connectors[{azq}].ConnectionString]: AzureStorageQueue: "
        "set ConnectionString: ${ENV_VAR} (or Host, the queue endpoint, with Username = the "
        "account name and Password = the account key)",
        f"config.yaml:{first + 8} [connectors[{sb}].ConnectionString]: AzureServiceBus: "
        "set ConnectionString: ${ENV_VAR}",
        f"config.yaml:{first + 10} [connectors[{sb}].Properties]: AzureServiceBus: set one of "
        "the QueueName and TopicName properties",
        f"config.yaml:{first + 13} [connectors[{kafka}].Properties]: Kafka: set the Topic "
        "property (the topic to produce to)",
        f"config.yaml:{first + 13} [connectors[{kafka}].Properties]: Kafka: Message is "
        "'Everything'; expected Event (the lightweight message) or Order (the whole order)",
        f"config.yaml:{first + 12} [connectors[{kafka}].Host]: Kafka: Host must be "
        "kafka://host:port[,host:port]",
    ]
    for line in expected:
        assert line in r.err, f"{line}\n---\n{r.err}"
    assert r.err.count("AzureServiceBus: set one of") == 1
    assert "Traceback" not in r.err
    run = project.run("run-flow", "order_flow", "--no-progress")
    assert run.code == 2 and expected[0] in run.err, run.out + run.err
    assert not (project.root / "logs" / "order_flow").exists()  # no run started


def test_an_exporter_check_names_only_connectors_an_export_step_uses(tmp_path: Path) -> None:
    """A connector no step exports to is not an exporter's business; ConnectorId picks one."""
    project = offline_project(tmp_path)
    with_queues(project, QUEUES_LACKING, steps="")
    r = project.run("validate")
    assert r.code == 0, r.out + r.err
    fine = (
        "  - Name: RabbitMQ\n    ConnectorId: rabbit-ok\n    Host: amqp://127.0.0.1:5672/%2F\n"
        "    Properties: [{Key: Exchange, Value: fanout-orders}]\n"  # a fanout: no Queue needed
    )
    with_queues(project, fine, steps="  - export: {Connector: RabbitMQ, ConnectorId: rabbit-ok}\n")
    r = project.run("validate")
    assert r.code == 0, r.out + r.err


def test_validate_checks_exporters_without_their_client_libraries(tmp_path: Path) -> None:
    """The checks run in a fresh interpreter without importing pika, azure, confluent_kafka,
    nor requests (validate must start fast)."""
    project = offline_project(tmp_path)
    with_queues(project, QUEUES_LACKING)
    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        f"os.environ.update({dict(project.env)!r})\n"
        "from integrator.pipeline.project import load_project\n"
        f"p = load_project(Path({str(project.root / 'config.yaml')!r}), strict=False, "
        "collect=True)\n"
        "print(len(p.issues))\n"
        "heavy = {'pika', 'azure', 'confluent_kafka', 'requests'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = fresh_python(code).stdout.splitlines()
    assert int(out[0]) == 8, out
    assert out[1] == "[]", out


def test_a_secret_written_as_a_number_is_refused_too(tmp_path: Path) -> None:
    """YAML reads ``BearerToken: 20260417123456`` as a number; it is still a secret in clear."""
    project = offline_project(tmp_path)
    cfg = project.root / "config.yaml"
    cfg.write_text(cfg.read_text().replace("${ERP_TOKEN}", "20260417123456"))
    r = project.run("validate")
    assert r.code == 2 and "[connectors[1].BearerToken]: secret written in clear" in r.err, r.err
    assert "20260417123456" not in r.out + r.err
