"""Every command, and a daemon run, with secrets in the config and in the payloads: none of
them may appear in any output, log file, the state store or what reaches the ERP."""

from __future__ import annotations

import json
import sqlite3

import pytest
import requests
import structlog
from support import Project, fault_rule, faults, unsent, wait_for
from support.daemon import daemon, every

from integrator.config.model import ConnectorConfig
from integrator.connectors import Connector
from integrator.connectors.redact import Redactor, scrub_urls, strip_channel_conf, url_secrets
from integrator.logs import configure_logging
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


# ------------------------------------------------------------------ secrets in URLs
URL_PASS = "url-Pass-5b8e21d4"  # the ERP connector's Host userinfo
HOOK_PASS = "hook-Pass-0c9d7a61"  # the webhook connector's Host userinfo
QUERY_KEY = "query-Key-3e6f90b2"  # ?api_key= on the ERP's write path
HOOK_TOKEN = "hook-Tok-8a2c4e17"  # ?token= on the webhook's endpoint
LIST_SIG = "list-Sig-71d0b5c3"  # ?signature= on Omnitron's order list


def texts_of(project: Project, outputs: list[str]) -> str:
    """Every output, log file and the whole SQLite store as one text."""
    texts = list(outputs)
    texts += [p.read_text() for p in (project.root / "logs").rglob("*") if p.is_file()]
    with sqlite3.connect(project.root / "state" / "integrator.db") as c:
        for (table,) in c.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            texts.append(json.dumps(list(c.execute(f"SELECT * FROM {table}")), default=str))
    return "\n".join(texts)


def test_secrets_in_urls_are_masked_in_every_output(project: Project, sandbox: Sandbox) -> None:
    """Userinfo and query-string secrets (by parameter name, or by value) in connector URLs
    and stage paths: a dry run, a run with an export and a failing order, ``runs``, ``orders
    show``, the run logs, the daemon's JSON log and the store never show them; the servers
    get what they must."""
    numbers = unsent(sandbox)
    erp_port = sandbox.erp.url.rsplit(":", 1)[1]
    project.env.update(
        ERP_URL=f"http://erp-user:{URL_PASS}@127.0.0.1:{erp_port}",
        ERP_QUERY_KEY=QUERY_KEY,
        HOOK_TOKEN=HOOK_TOKEN,
        LIST_SIG=LIST_SIG,
    )
    cfg = project.root / "config.yaml"
    cfg.write_text(
        cfg.read_text() + "  - Name: Webhook\n"
        f"    Host: http://hook:{HOOK_PASS}@127.0.0.1:{erp_port}\n"
        "    BearerToken: ${ERP_TOKEN}\n"
        "    Properties:\n"
        "      - Key: WebhookEndpoint\n"
        "        Value: /webhooks/partner/?token=${HOOK_TOKEN}\n"
    )
    # ?api_key= by name; &ref= carries the ERP token: a secret by value
    project.edit_flow(
        "      path: /api/orders/\n",
        "      path: /api/orders/?api_key=${ERP_QUERY_KEY}&ref=${ERP_TOKEN}\n",
    )
    project.edit_flow(
        "      page_size: 50\n",
        "      page_size: 50\n      params:\n        signature: ${LIST_SIG}\n",
    )
    project.edit_flow("  - post_script:\n", "  - export: {Connector: Webhook}\n  - post_script:\n")
    # The ERP refuses one order and echoes the whole request line and Host in its error.
    echo = (
        f"POST http://erp-user:{URL_PASS}@127.0.0.1:{erp_port}/api/orders/"
        f"?api_key={QUERY_KEY}&ref={sandbox.credentials['ERP_TOKEN']} was refused"
    )
    fault_rule(sandbox.erp.url, action="body", route="create", status=400,
               body=json.dumps({"detail": echo}), numbers=[numbers[0]])  # fmt: skip
    outputs: list[str] = []

    def run(*args: str) -> str:
        r = project.run(*args)
        outputs.extend([r.out, r.err])
        return r.out + r.err

    run("validate")
    run("flows")
    dry = run("run-flow", "order_flow", "--dry-run", "--limit", "2")
    assert "/api/orders/?api_key=***" in dry  # the planned write, masked
    assert "erp-user:***@" in dry
    ran = run("run-flow", "order_flow", "--no-progress")
    assert "was refused" in ran  # the echoing error was shown, scrubbed
    run("runs")
    run("orders", "show", numbers[0])
    run("orders", "show", numbers[1])
    run("quarantine")
    order = project.root / "order.json"
    order.write_text(json.dumps(sandbox.omnitron.orders[2]))
    traced = run("test-flow", "order_flow", "--order", str(order))
    assert "?api_key=***" in traced  # the write it would send, masked
    every(project)
    with daemon(project) as d:
        wait_for(lambda: d.named("run_ended"), what="a daemon run")
        assert d.stop() == 0
        outputs += d.raw
    # the servers got the real thing: every order but the refused one, once, with its export
    assert sandbox.erp.received.get(numbers[0], 0) == 0
    assert all(sandbox.erp.received[n] == 1 for n in numbers[1:])
    received = sandbox.erp.webhooks["partner"]
    assert sorted(b["number"] for b in received) == sorted(numbers[1:])
    joined = texts_of(project, outputs)
    joined += "\n".join(json.dumps(b) for b in received)  # the export payloads
    joined += "\n".join(json.dumps(o["payload"]) for o in sandbox.erp.orders.values())
    for secret in (URL_PASS, HOOK_PASS, QUERY_KEY, HOOK_TOKEN, LIST_SIG,
                   sandbox.credentials["ERP_TOKEN"]):  # fmt: skip
        assert secret not in joined, f"a secret leaked: {secret[:4]}…"


# ------------------------------------------------------------------ channel.conf
CONF_PLAIN = "merchant-Code-4f1e8b"  # under a key that does not look secret
CONF_SIFRE = "gizli-Deger-9a7c3d51"  # Turkish "şifre" (password): no English secret word


def test_channel_conf_is_masked_whole_as_an_object_or_a_json_string(
    project: Project, sandbox: Sandbox
) -> None:
    """Every value under channel.conf is masked, whatever its key, whether Omnitron sends an
    object or a JSON string; a script that tries to forward it gets only masks."""
    numbers = unsent(sandbox)
    orders = sorted(sandbox.omnitron.orders.values(), key=lambda o: o["pk"])
    as_text = next(o for o in orders if o["number"] == numbers[0])
    conf = {"sifre": CONF_SIFRE, "merchant": {"code": CONF_PLAIN, "ids": [CONF_PLAIN]},
            "password": CHANNEL_SECRET}  # fmt: skip
    as_text["channel"] = {**as_text["channel"], "conf": json.dumps(conf)}
    as_object = next(o for o in orders if o["number"] == numbers[1])
    as_object["channel"] = {**as_object["channel"], "conf": conf}
    project.forward_channel_conf()
    r = project.run("run-flow", "order_flow", "--no-progress")
    assert r.code == 0, r.out + r.err
    shown = project.run("orders", "show", numbers[0])
    payloads = {n: p for n in numbers[:2] if (p := sandbox.erp.payload(n)) is not None}
    assert len(payloads) == 2
    # the shape is kept: a JSON string stays one, an object stays one
    assert '"sifre": "***"' in payloads[numbers[0]]["source"]
    assert "'sifre': '***'" in payloads[numbers[1]]["source"]
    joined = texts_of(project, [r.out, r.err, shown.out, shown.err])
    joined += "\n".join(json.dumps(p) for p in payloads.values())
    for secret in (CONF_PLAIN, CONF_SIFRE, CHANNEL_SECRET):
        assert secret not in joined, f"a channel.conf value leaked: {secret[:4]}…"


# ------------------------------------------------------------------ masking never changes data
def test_a_short_secret_inside_the_erp_reference_never_changes_what_is_written_back(
    project: Project, sandbox: Sandbox
) -> None:
    """A 4-character channel secret "0000" is a part of every ERP id (ERP-0000002). The mark
    fails once, so the next run resumes from the stored answer: Omnitron must get the exact
    ERP references, while ``orders show`` and the logs still mask the secret."""
    numbers = unsent(sandbox)
    for o in sandbox.omnitron.orders.values():
        o["channel"] = {**o["channel"], "conf": {"auth_token": "0000"}}
    project.edit_flow("concurrency: 4", "concurrency: 1")
    target = numbers[0]
    fault_rule(sandbox.omnitron.url, action="status", route="patch_order", status=400,
               count=1, numbers=[target])  # fmt: skip
    first = project.run("run-flow", "order_flow", "--no-progress")
    assert first.code != 0 or "failed" in first.out, first.out + first.err
    assert project.state(target) == "sent"  # the ERP has it; the mark failed
    again = project.run("run-flow", "order_flow", "--no-progress")
    assert again.code == 0, again.out + again.err
    assert project.state(target) == "done"
    assert sandbox.erp.received[target] == 1
    erp_order = sandbox.erp.orders[target]
    erp_lines = [line["line_id"] for line in erp_order["lines"]]
    assert all("0000" in line for line in erp_lines)  # the secret is in every reference
    pk = next(o["pk"] for o in sandbox.omnitron.orders.values() if o["number"] == target)
    written = sorted(
        i["extra_field"]["erp_line_id"] for i in sandbox.omnitron.items.values() if i["order"] == pk
    )
    assert written == sorted(erp_lines)  # exactly what the ERP answered, not ERP-***…
    shown = project.run("orders", "show", target)
    assert shown.code == 0, shown.err
    assert "ERP ref ERP-***" in shown.out
    assert erp_order["id"] not in shown.out


# ------------------------------------------------------------------ the redactor and the logs
def test_the_redactor_masks_url_credentials_and_encoded_secrets() -> None:
    """By shape (userinfo, secret-named query parameters) with no secret known; by value,
    also percent-encoded and inside JSON strings; a clean document comes back unchanged."""
    r = Redactor(["k3y/with+plus=", "s3cret-value"])
    assert r.scrub("GET https://erp-user:pa55word@erp.example/api/?a=1&api_key=zz9&b=2") == (
        "GET https://erp-user:***@erp.example/api/?a=1&api_key=***&b=2"
    )
    assert r.scrub("https://ghp_tokenonly@git.example/x") == "https://***@git.example/x"
    assert r.scrub("?signature=abc&X-Amz-Credential=def&sig=ghi&code=TR") == (
        "?signature=***&X-Amz-Credential=***&sig=***&code=TR"
    )
    assert r.scrub("/x?ref=k3y%2Fwith%2Bplus%3D") == "/x?ref=***"  # a known value, encoded
    assert r.scrub("https://u:p@ss@host/x") == "https://u:***@host/x"  # the last @ ends it
    assert r.scrub("write to ops@example.com, see https://example.com/a?b=c") == (
        "write to ops@example.com, see https://example.com/a?b=c"
    )
    doc = {"url": "https://a:b@h/?token=t0ken", "note": "ok", "ref": "s3cret-value"}
    assert r.redact(doc) == {"url": "https://a:***@h/?token=***", "note": "ok", "ref": "***"}
    clean = {"number": "1", "email": "a@b.c", "q": "x=1&y=2"}
    assert r.redact(clean) is clean
    assert url_secrets("https://u:p%40ss@h/x?token=t1&x=2") == ["p%40ss", "t1", "p@ss"]
    assert scrub_urls("error: https://u:pw@h/") == "error: https://u:***@h/"


def test_an_echoed_secret_is_masked_escaped_and_never_shown_in_part() -> None:
    """An ERP error echoing the request: the secret JSON-escaped (``\\u00e4``; ``\\/`` as
    PHP writes it), and an error excerpt cut inside the secret shows none of it."""
    token = "Zm9vYmFy/YmF6cXV4+c2VjcmV0dG9rZW4="
    r = Redactor([token, "pässwört-geheim-1"])
    php = json.dumps({"auth": f"Bearer {token}"}).replace("/", "\\/")
    assert r.scrub(php) == '{"auth": "Bearer ***"}'
    assert r.scrub(json.dumps({"pw": "pässwört-geheim-1"})) == '{"pw": "***"}'
    cut = "x" * 190 + "Authorization: Bearer " + token + "y" * 5000
    shown = r.excerpt(cut, 200)
    assert len(shown) == 200
    assert token[:4] not in shown
    assert r.excerpt("short " + token, 200) == "short ***"
    assert r.excerpt("a" * 5000, 200) == "a" * 200
    answer = requests.Response()
    answer.status_code, answer._content, answer.encoding = 400, cut.encode(), "utf-8"
    erp = Connector(ConnectorConfig(name="erp", host="http://127.0.0.1:9"), r)
    error = str(erp.status_error("GET erp:/x", answer))
    erp.close()
    assert "Bearer ***" in error or "Bearer" not in error
    assert token[:4] not in error


def test_channel_conf_masking_keeps_its_shape() -> None:
    r = Redactor()
    text = {"channel": {"conf": json.dumps({"sifre": "gizli-Deger-9a7c3d51", "n": [1, None]})}}
    strip_channel_conf(text, r)
    assert json.loads(text["channel"]["conf"]) == {"sifre": "***", "n": ["***", None]}
    assert r.scrub("echo gizli-Deger-9a7c3d51") == "echo ***"  # learned: a long value
    opaque = {"channel": {"conf": "not json: user=a pass=b"}}
    strip_channel_conf(opaque, r)
    assert opaque["channel"]["conf"] == "***"


@pytest.mark.parametrize("as_json", [False, True])
def test_logs_mask_url_credentials_and_show_no_local_variables(
    as_json: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """structlog, console (with --debug's tracebacks) and JSON: URL credentials and known
    secrets are masked in fields and in the traceback; no frame's local variables are
    printed (rich's tracebacks would show them, past the redactor)."""
    before = structlog.get_config()
    configure_logging("INFO", json=as_json, secrets=["known-Secret-1"], tracebacks=True)
    log = structlog.get_logger("test")

    def failing() -> None:
        credential = "local-Secret-77a1"  # noqa: F841  # a local variable of the frame
        raise RuntimeError("POST https://u:url-Pass-9@h/x?token=tok-1 known-Secret-1")

    try:
        failing()
    except RuntimeError:
        log.exception("boom", url="https://u:url-Pass-9@h/x?api_key=k-1")
    finally:
        structlog.configure(**before)  # later tests must not print to this test's stderr
    out = capsys.readouterr().err
    assert "boom" in out and "RuntimeError" in out and "u:***@h" in out
    for secret in ("url-Pass-9", "tok-1", "k-1", "known-Secret-1", "local-Secret-77a1"):
        assert secret not in out, secret


@pytest.mark.parametrize("debug", [False, True])
def test_an_unexpected_error_shows_no_url_credentials(
    debug: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The last net, before anything is loaded: ``internal error`` and --debug's traceback."""
    from integrator.cli import main as cli_main

    def broken(**_kw: object) -> None:
        raise RuntimeError("GET https://u:pw-Secret-1@h/x?token=tok-Secret-2 failed")

    monkeypatch.setattr(cli_main.cli, "main", broken)
    with pytest.raises(SystemExit) as exit_:
        cli_main.main(["--debug", "runs"] if debug else ["runs"])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert "RuntimeError" in err and "https://u:***@h/x?token=***" in err
    assert ("Traceback" in err) is debug
    assert "pw-Secret-1" not in err and "tok-Secret-2" not in err
