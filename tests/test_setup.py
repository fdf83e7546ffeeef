"""Set-up without hand-exported variables (the ``.env`` convention), and errors that users
cause named as such: through the real CLI, in a clean environment (no sandbox variable)."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest
from support import make_project
from support.newcomer import Proc, clean_env, cli, sandbox_cmd

from integrator.sandbox import SANDBOX_ENV, Sandbox

VARS = ("OMNITRON_USERNAME", "OMNITRON_PASSWORD", "ERP_TOKEN")


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    """A copy of the project, no .env, for a newcomer's shell."""
    return make_project(tmp_path, {}).root


# ---------------------------------------------------------------- the .env convention


def test_validate_without_env_says_start_the_sandbox_naming_the_variables(bare: Path) -> None:
    r = cli(bare, "validate")
    assert r.code == 2, r
    hint = r.err.splitlines()[-1]
    assert f"not set: {', '.join(VARS)}." in hint, r.err
    assert "start `integrator sandbox` in another terminal (it writes .env" in hint
    assert "export them" in hint and "internal error" not in r.err


def test_sandbox_writes_env_and_validate_and_run_flow_need_no_exports(bare: Path) -> None:
    with sandbox_cmd(bare) as sb:
        wrote = sb.seen[-1]
        assert wrote.startswith("wrote .env with the sandbox's values"), sb.seen
        assert "nothing to export" in wrote
        env_file = bare / ".env"
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        values = dict(
            line.split("=", 1)
            for line in env_file.read_text().splitlines()
            if line and not line.startswith("#")
        )
        assert values["OMNITRON_URL"].startswith("http://127.0.0.1:")
        assert values["OMNITRON_URL"] in wrote and values["ERP_URL"] in wrote
        assert {k: values[k] for k in SANDBOX_ENV} == SANDBOX_ENV  # its public values only

        r = cli(bare, "validate")
        assert r.code == 0 and "2 flow(s) valid" in r.out, r
        r = cli(bare, "run-flow", "order_flow")
        assert r.code == 0, r
        assert "│        20 │      0 │" in r.out, r.out
    assert sb.p.returncode == 0
    assert "export " not in sb.rest()


def test_sandbox_never_overwrites_an_env_and_says_what_differs(bare: Path) -> None:
    mine = "# mine\nERP_URL=http://127.0.0.1:1\nOMNITRON_USERNAME=integrator\n"
    (bare / ".env").write_text(mine)
    with sandbox_cmd(bare) as sb:
        sb.wait_line("start the sandbox again")
    out = sb.rest()
    assert ".env exists: kept as it is (never overwritten)" in out, out
    assert "ERP_URL is http://127.0.0.1:1 in .env; this sandbox serves http://127.0.0.1:" in out
    assert "OMNITRON_URL" not in out  # not set in .env: config.yaml's default, not a difference
    assert (bare / ".env").read_text() == mine


def test_sandbox_does_not_write_a_credential_taken_from_the_environment(bare: Path) -> None:
    env = clean_env(ERP_TOKEN="prod-token-never-on-disk")
    with sandbox_cmd(bare, env=env) as sb:
        pass
    out = sb.rest()
    text = (bare / ".env").read_text()
    assert "prod-token-never-on-disk" not in text + out
    assert "ERP_TOKEN=" not in text and "# ERP_TOKEN: the sandbox uses the value in your" in text


def test_sandbox_in_a_directory_without_config_writes_no_env(tmp_path: Path) -> None:
    with sandbox_cmd(tmp_path) as sb:
        sb.wait_line("export OMNIUM_EVENT_SECRET=")
    out = sb.rest()
    assert "no config.yaml here: no .env written" in out and "export ERP_URL=" in out
    assert not (tmp_path / ".env").exists()


def test_sandbox_that_cannot_write_env_says_so_and_serves(bare: Path) -> None:
    bare.chmod(0o555)
    try:
        with sandbox_cmd(bare, as_user=True) as sb:
            said = sb.seen[-1]
            sb.wait_line("export OMNIUM_EVENT_SECRET=")
    finally:
        bare.chmod(0o755)
    assert said.startswith("cannot write .env: Permission denied; the sandbox runs anyway"), said
    assert "export ERP_URL=http://127.0.0.1:" in sb.rest() and not (bare / ".env").exists()


def test_validate_with_an_env_lacking_a_variable_says_add_it_there(bare: Path) -> None:
    (bare / ".env").write_text("OMNITRON_USERNAME=integrator\nOMNITRON_PASSWORD=sandbox-pass\n")
    r = cli(bare, "validate")
    assert r.code == 2, r
    assert "not set, in the environment or in .env: ERP_TOKEN; add them to .env" in r.err


def test_the_environment_wins_over_env(bare: Path) -> None:
    (bare / ".env").write_text(
        "OMNITRON_USERNAME=integrator\nOMNITRON_PASSWORD=sandbox-pass\nERP_TOKEN=short\n"
    )
    r = cli(bare, "validate")  # .env is read: its too-short token is refused
    assert r.code == 2 and "the secret from ERP_TOKEN has 5 characters" in r.err, r
    r = cli(bare, "validate", env=clean_env(ERP_TOKEN="long-enough-token"))
    assert r.code == 0, r


def test_env_beside_the_config_given_with_c(bare: Path) -> None:
    omnium = "OMNIUM_CLIENT_ID=omnium-client\nOMNIUM_CLIENT_SECRET=omnium-sandbox-secret\n"
    omnium += "ERP_TOKEN=sandbox-erp-token\nOMNIUM_EVENT_SECRET=omnium-event-shared-secret\n"
    (bare / ".env").write_text(omnium)  # the main project's .env: not the omnium project's
    r = cli(bare, "-c", "flows/omnium/config.yaml", "validate")
    assert r.code == 2 and "start `integrator -c flows/omnium/config.yaml sandbox`" in r.err, r
    (bare / "flows" / "omnium" / ".env").write_text(omnium)
    r = cli(bare, "-c", "flows/omnium/config.yaml", "validate")
    assert r.code == 0, r


def test_integrator_state_in_env_points_commands_at_that_store(bare: Path) -> None:
    (bare / ".env").write_text("INTEGRATOR_STATE=sqlite:///elsewhere/x.db\n")
    r = cli(bare, "runs")
    assert r.code == 0, r
    assert (bare / "elsewhere" / "x.db").exists() and not (bare / "state").exists()


def test_the_daemon_reads_no_env_unless_told(bare: Path, sandbox: Sandbox) -> None:
    env_text = "".join(f"{k}={v}\n" for k, v in sandbox.env().items())
    (bare / ".env").write_text(env_text)
    r = cli(bare, "daemon", "--http", "127.0.0.1:0")
    assert r.code == 2, r
    assert f"not set: {', '.join(VARS)}. The daemon reads no .env file unless told" in r.err
    assert "(.env exists: --env-file .env reads it)" in r.err
    (bare / "prod.env").write_text(env_text)
    d = Proc(bare, "daemon", "--http", "127.0.0.1:0", "--env-file", "prod.env")
    try:
        d.wait_line('"daemon_started"')
    finally:
        assert d.stop() == 0, d.rest()
    r = cli(bare, "daemon", "--env-file", "missing.env")
    assert r.code == 2 and "error: missing.env: no such file" in r.err, r


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (
            b'OMNITRON_USERNAME=integrator\nERP_TOKEN="s3cret-unclosed\nX=1\n',
            ".env:2: cannot parse this line; expected NAME=value",
        ),
        (b"OMNITRON_USERNAME=integrator\nERP_TOKEN=caf\xe9\n", ".env:2: not UTF-8: byte 0xe9"),
        (b"1ERP=x\n", ".env:1 [1ERP]: not a variable name"),
    ],
    ids=["unclosed-quote", "latin-1", "bad-name"],
)
def test_a_broken_env_is_named_by_line_without_echoing_it(
    bare: Path, content: bytes, says: str
) -> None:
    (bare / ".env").write_bytes(content)
    r = cli(bare, "validate")
    assert r.code == 2 and says in r.err, r
    assert "s3cret" not in r.err and "internal error" not in r.err


def test_an_env_that_is_a_directory_or_a_fifo_is_refused_without_waiting(bare: Path) -> None:
    os.mkfifo(bare / ".env")  # reading a FIFO would wait for a writer for ever
    r = cli(bare, "validate")
    assert r.code == 2 and "error: .env is not a regular file" in r.err, r
    (bare / ".env").unlink()
    (bare / ".env").mkdir()
    r = cli(bare, "runs")
    assert r.code == 2 and "error: .env is not a regular file" in r.err, r


# ---------------------------------------------------------------- errors users cause


def test_sandbox_on_a_port_in_use_names_the_port(bare: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = str(s.getsockname()[1])
        r = cli(
            bare, "sandbox", "--erp-port", port, "--omnitron-port", "0", "--omnium-port", "0",
            "--jsonrpc-erp-port", "0", "--soap-erp-port", "0",
        )  # fmt: skip
    assert r.code == 2, r
    assert f"port {port} (ERP: --erp-port): in use by another process" in r.err, r.err
    assert "Is a sandbox already running?" in r.err
    assert "internal error" not in r.err and "Traceback" not in r.err
    assert not (bare / ".env").exists()


def test_a_state_folder_without_permission_is_a_user_error(bare: Path) -> None:
    (bare / "state").mkdir()
    (bare / "state").chmod(0o555)
    r = cli(bare, "runs", as_user=True)
    assert r.code == 2, r
    assert "error: " in r.err and "state" in r.err and "permission denied" in r.err, r.err
    assert "ls -ld" in r.err and "internal error" not in r.err


def test_a_file_where_the_state_folder_should_be_is_a_user_error(bare: Path) -> None:
    (bare / "state").write_text("")
    r = cli(bare, "runs")
    assert r.code == 2, r
    assert "state: exists, and is in the way" in r.err and "internal error" not in r.err


def test_an_unreadable_env_is_a_user_error(bare: Path) -> None:
    (bare / ".env").write_text("ERP_TOKEN=sandbox-erp-token\n")
    (bare / ".env").chmod(0)
    r = cli(bare, "validate", as_user=True)
    assert r.code == 2 and "error: cannot read .env: Permission denied" in r.err, r


def test_a_logs_folder_without_permission_is_a_user_error(bare: Path, sandbox: Sandbox) -> None:
    (bare / "logs").mkdir()
    (bare / "logs").chmod(0o555)
    r = cli(bare, "run-flow", "order_flow", env=clean_env(**sandbox.env()), as_user=True)
    assert r.code == 2, r
    assert "logs/order_flow: permission denied" in r.err and "internal error" not in r.err


def test_a_json_file_that_is_not_utf8_is_named(bare: Path) -> None:
    (bare / "order.json").write_bytes(b'{"number": "caf\xe9"}')
    r = cli(bare, "test-script", "scripts/enrich_order.py", "--input", "order.json")
    assert r.code == 2, r
    assert "order.json:1 [--input]: not UTF-8: byte 0xe9 at byte offset 15" in r.err, r.err
    assert "internal error" not in r.err


def test_a_missing_config_and_script_are_named(bare: Path) -> None:
    r = cli(bare, "-c", "nope.yaml", "validate")
    assert r.code == 2 and "nope.yaml: cannot read the file: No such file" in r.err, r
    r = cli(bare, "test-script", "scripts/nope.py", "--input", "x.json")
    assert r.code == 2 and "nope" in r.err and "internal error" not in r.err, r


def test_an_os_error_naming_no_file_is_still_an_internal_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only what the user can fix is a user error: a reset connection deep in a bug is not."""
    from integrator.cli import main as cli_main

    def broken(**_kw: object) -> None:
        raise ConnectionResetError(104, "Connection reset by peer")

    monkeypatch.setattr(cli_main.cli, "main", broken)
    with pytest.raises(SystemExit) as exit_:
        cli_main.main(["runs"])
    assert exit_.value.code == 1
    assert "internal error: ConnectionResetError" in capsys.readouterr().err
