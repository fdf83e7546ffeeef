"""Issue 15, items 2 and 5, through the real CLI: the demo explains what it seeded and prints
commands that work exactly as printed; a dry run writes nothing (no state file, no lock, no
run row), shows every request it would send and says why it would skip an order."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shlex
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect
from sqlalchemy.exc import SQLAlchemyError
from support import ROOT, Project, Result, make_project, stats
from support.services import fresh_database

from integrator.sandbox import Sandbox
from integrator.state import Store


# --------------------------------------------------------------------------------- helpers
def files(root: Path) -> dict[str, str]:
    """Every file under ``root`` with a hash of its bytes (what "writes nothing" means)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def query(project: Project, sql: str) -> list[tuple[Any, ...]]:
    """Rows from the project's SQLite store, the connection closed at once (an open one keeps
    the store's -wal and -shm files in place)."""
    with contextlib.closing(sqlite3.connect(project.root / "state" / "integrator.db")) as c:
        return list(c.execute(sql))


def state(project: Project, number: str) -> str:
    return str(query(project, f"SELECT state FROM journal WHERE order_number = '{number}'")[0][0])


def unsent(sb: Sandbox) -> list[dict[str, Any]]:
    """The orders the flow lists: status 400, not sent."""
    return [o for o in sb.omnitron.orders.values() if o["status"] == "400" and not o["is_send"]]


def plan(out: str) -> list[dict[str, Any]]:
    """The requests a dry run printed (its JSON lines)."""
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"order"')]


def sandbox_stats(sb: Sandbox) -> tuple[dict[str, Any], dict[str, Any]]:
    """What both servers hold and were sent (without the count of calls: a dry run reads)."""
    o, e = stats(sb.omnitron.url), stats(sb.erp.url)
    o.pop("calls"), e.pop("calls", None)
    return o, e


def next_commands(out: str) -> list[str]:
    """The commands the demo printed after its ``next`` line."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("next, on the demo's"))
    return [line.strip() for line in lines[start + 1 :] if line.startswith("  ")]


def run_as_printed(cmd: str, cwd: Path, env: dict[str, str]) -> Result:
    """Run a printed command exactly as a user would paste it (no shell needed: shlex)."""
    p = subprocess.run(
        shlex.split(cmd), cwd=cwd, capture_output=True, text=True, timeout=120, env=env
    )
    return Result(p.returncode, p.stdout, p.stderr)


def console_script(where: Path) -> Path:
    """``integrator`` as pip installs it into a venv's bin/: a script run by this Python."""
    where.mkdir(parents=True, exist_ok=True)
    script = where / "integrator"
    script.write_text(
        f"#!{sys.executable}\nfrom integrator.cli.main import main\n\nmain()\n", encoding="utf-8"
    )
    script.chmod(0o755)
    return script


def quiet_env(**extra: str) -> dict[str, str]:
    """The test's environment without any sandbox variables (the demo brings its own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMNITRON_", "ERP_"))}
    return {**env, **extra}


# -------------------------------------------------------------------------------- the demo
def check_demo(out: str, root: Path, prefix: list[str], cwd: Path, env: dict[str, str]) -> None:
    """The demo's explanations, then each printed command run as printed."""
    assert "20 unsent (the flow sends these), 3 seeded as already sent" in out, out
    assert "2 cancelled" in out
    assert "Omnitron: 23 sent (20 by this run + 3 seeded as sent), 0 unsent" in out
    assert "ERP: 23 orders (20 written now + 3 seeded), 0 duplicates" in out
    number = next(x for x in out.splitlines() if x.startswith("an order to try: ")).split()[4]
    commands = next_commands(out)
    db = root / "state" / "demo" / "integrator.db"
    assert len(commands) == 2, out
    for cmd in commands:
        words = shlex.split(cmd)
        assert words[: len(prefix)] == prefix, (cmd, prefix)
        assert f"sqlite:///{db}" in words  # the demo's own store, named
    runs = run_as_printed(commands[0], cwd, env)
    assert runs.code == 0, runs.out + runs.err
    assert "order_flow" in runs.out and "ok" in runs.out and "20" in runs.out
    show = run_as_printed(commands[1], cwd, env)
    assert show.code == 0, show.out + show.err
    assert f"order {number} " in show.out and "done" in show.out
    # its run log lives with its store (its run ids start at 1 again every demo)
    assert (root / "state" / "demo" / "logs" / "order_flow" / "run-1.jsonl").is_file()
    assert not (root / "logs").exists()


def test_demo_as_python_m(tmp_path: Path) -> None:
    """``python -m integrator demo``: the next commands name the same interpreter."""
    project = make_project(tmp_path, {})
    env = quiet_env()
    p = subprocess.run(
        [sys.executable, "-m", "integrator", "demo"],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    check_demo(p.stdout, project.root, [sys.executable, "-m", "integrator"], project.root, env)


def test_demo_as_a_venv_script_not_on_path(tmp_path: Path) -> None:
    """``.venv/bin/integrator demo`` without an activated venv: the commands say the same."""
    project = make_project(tmp_path, {})
    console_script(project.root / ".venv" / "bin")
    env = quiet_env()
    p = subprocess.run(
        [".venv/bin/integrator", "demo"],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    check_demo(p.stdout, project.root, [".venv/bin/integrator"], project.root, env)


def test_demo_as_a_command_on_path_with_another_config(tmp_path: Path) -> None:
    """``integrator --config "my shop/config.yaml" demo``, found on PATH, from another
    directory: the commands say ``integrator``, keep the --config, and quote the paths."""
    (tmp_path / "my shop").mkdir()
    project = make_project(tmp_path / "my shop", {})
    bin_dir = tmp_path / "bin"
    console_script(bin_dir)
    env = quiet_env(PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    p = subprocess.run(
        ["integrator", "--config", "my shop/config.yaml", "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "integrator --config 'my shop/config.yaml' --state 'sqlite:///" in p.stdout
    prefix = ["integrator", "--config", "my shop/config.yaml"]
    check_demo(p.stdout, project.root, prefix, tmp_path, env)


# ------------------------------------------------------------------------------- dry runs
def test_a_dry_run_in_a_fresh_project_writes_nothing_and_shows_every_request(
    project: Project, sandbox: Sandbox
) -> None:
    """No state file, no lock file, no log: the project's files are as they were. Every
    request is shown: the ERP POST, a PATCH per item with placeholders for the ERP's line ids,
    the order PATCH; and the sandbox saw no write."""
    before, seen = files(project.root), sandbox_stats(sandbox)
    r = project.run("run-flow", "order_flow", "--dry-run")
    assert r.code == 0, r.out + r.err
    assert files(project.root) == before
    assert not (project.root / "state").exists()
    assert sandbox_stats(sandbox) == seen
    assert seen[1]["received"] == 0 and seen[0]["patches"] == 0
    requests = plan(r.out)
    orders = unsent(sandbox)
    assert len(orders) == 20
    for o in orders:
        mine = [q for q in requests if q["order"] == o["number"]]
        posts = [q for q in mine if q["method"] == "POST"]
        assert len(posts) == 1 and posts[0]["url"] == f"{sandbox.erp.url}/api/orders/"
        items = sorted(pk for pk, i in sandbox.omnitron.items.items() if i["order"] == o["pk"])
        patched = {q["url"]: q["body"] for q in mine if q["method"] == "PATCH"}
        assert len(patched) == len(items) + 1, mine
        for pk in items:
            body = patched[f"{sandbox.omnitron.url}/api/v1/order_items/{pk}/"]
            assert body == {
                "extra_field": {
                    "erp_line_id": f"<from the ERP's answer: line_id of its line whose "
                    f"external_id is {pk}>"
                }
            }
        assert patched[f"{sandbox.omnitron.url}/api/v1/orders/{o['pk']}/"] == {"is_send": True}
    assert "20 order(s) would be sent" in r.out and "nothing was written" in r.out
    assert "no state store yet" in r.out


def test_a_dry_run_says_why_it_would_skip_and_leaves_the_store_as_it_was(
    project: Project, sandbox: Sandbox
) -> None:
    """After real runs left one order quarantined and one backing off, a dry run names both
    with the ledger's reasons, plans only the others, and changes no byte of the store:
    nothing is created beside it, no run is recorded. The same while another process holds
    the store open and the flow's lock."""
    orders = sorted(o["number"] for o in unsent(sandbox))
    held, waiting = orders[0], orders[1]
    project.edit_flow("max_attempts: 5", "max_attempts: 1")
    project.misbehave_for(held, 'raise ValueError("no ERP customer for this order")')
    first = project.run("run-flow", "order_flow", "--no-progress", "--order", held)
    assert first.code == 1, first.out + first.err  # one charged failure of 1: quarantined
    project.edit_flow("max_attempts: 1", "max_attempts: 3\nbackoff_seconds: 3600")
    project.misbehave_for(waiting, 'raise ValueError("no tax office")')
    second = project.run("run-flow", "order_flow", "--no-progress")
    assert second.code == 1, second.out + second.err  # 1 of 3: backing off for an hour
    assert state(project, held) == "quarantined" and state(project, waiting) == "failed"
    runs = query(project, "SELECT COUNT(*) FROM runs")
    before, seen = files(project.root), sandbox_stats(sandbox)
    assert not any(name.endswith(("-wal", "-shm")) for name in before)

    r = project.run("run-flow", "order_flow", "--dry-run")
    assert r.code == 0, r.out + r.err
    assert "Traceback" not in r.out + r.err
    assert files(project.root) == before  # not a byte, not a side file
    assert query(project, "SELECT COUNT(*) FROM runs") == runs
    assert sandbox_stats(sandbox) == seen
    lines = r.out.splitlines()
    row = next(x for x in lines if held in x)
    assert "quarantined" in row and "no ERP customer for this order" in r.out
    row = next(x for x in lines if waiting in x and "backing off until" in x)
    assert "failed" in row
    assert "integrator replay NUMBER" in r.out
    assert "skipped (backing off: 1, quarantined: 1)" in r.out
    assert plan(r.out) == []  # every other order was sent by the first run

    # Another process has the store open (its -wal and -shm exist) and holds the flow's lock.
    db = project.root / "state" / "integrator.db"
    other = sqlite3.connect(db)
    lock = os.open(project.root / "state" / ".order_flow.lock", os.O_RDWR)
    try:
        other.execute("SELECT COUNT(*) FROM journal").fetchall()
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        listing = sorted(p.name for p in db.parent.iterdir())
        assert f"{db.name}-wal" in listing and f"{db.name}-shm" in listing
        shown = project.run("run-flow", "order_flow", "--dry-run")
        assert shown.code == 0, shown.out + shown.err
        assert "skipped (backing off: 1, quarantined: 1)" in shown.out
        assert sorted(p.name for p in db.parent.iterdir()) == listing
    finally:
        os.close(lock)
        other.close()
    assert query(project, "SELECT COUNT(*) FROM runs") == runs


def test_a_dry_run_does_not_migrate_an_older_store(project: Project, sandbox: Sandbox) -> None:
    """A store of 0.1.0: a dry run cannot migrate it (that is a write); it says so and what to
    do, and leaves the file as it was."""
    state = project.root / "state"
    state.mkdir()
    with sqlite3.connect(state / "integrator.db") as c:
        c.executescript((ROOT / "tests" / "fixtures" / "store_0.1.0.sqlite.sql").read_text())
    c.close()
    before = files(project.root)
    r = project.run("run-flow", "order_flow", "--dry-run")
    assert r.code == 1, r.out + r.err
    assert "schema version 1" in r.err and "does not migrate" in r.err, r.err
    assert "integrator runs" in r.err and "Traceback" not in r.err
    assert files(project.root) == before
    assert stats(sandbox.erp.url)["received"] == 0


@pytest.mark.services
def test_a_dry_run_on_an_empty_postgresql_database_creates_no_table(
    project: Project, sandbox: Sandbox
) -> None:
    """PostgreSQL: no schema is created, and every order counts as new."""
    with fresh_database() as url:
        project.use_state_url(url)
        r = project.run("run-flow", "order_flow", "--dry-run", "--limit", "2")
        assert r.code == 0, r.out + r.err
        assert "2 order(s) would be sent" in r.out and "no state store yet" in r.out
        assert "postgres-secret" not in r.out + r.err
        engine = create_engine(url)
        try:
            with engine.connect() as c:
                assert inspect(c).get_table_names() == []
        finally:
            engine.dispose()
        assert project.run("run-flow", "order_flow", "--no-progress", "--limit", "1").code == 0
        again = project.run("run-flow", "order_flow", "--dry-run")
        assert again.code == 0, again.out + again.err
        assert "19 order(s) would be sent" in again.out and "no state store yet" not in again.out
        engine = create_engine(url)
        try:
            with engine.connect() as c:
                assert c.exec_driver_sql("SELECT COUNT(*) FROM runs").scalar() == 1
        finally:
            engine.dispose()
    assert not (project.root / "state").exists()


def test_a_dry_run_reads_a_store_whose_path_needs_quoting(
    project: Project, sandbox: Sandbox
) -> None:
    """The read-only URI escapes the path: a space and a ``#`` (a URI's fragment) in it. (A
    ``?`` or ``%XX`` in a store's path is another matter: SQLAlchemy's URL takes them apart
    for the writable store too.)"""
    weird = project.root / "st ate #1" / "integrator.db"
    project.use_state_url(f"sqlite:///{weird}")
    assert project.run("run-flow", "order_flow", "--no-progress", "--limit", "1").code == 0
    before = files(project.root)
    r = project.run("run-flow", "order_flow", "--dry-run")
    assert r.code == 0, r.out + r.err
    assert "19 order(s) would be sent" in r.out and "no state store yet" not in r.out
    assert files(project.root) == before


def test_a_read_only_store_refuses_writes_and_creates_nothing(tmp_path: Path) -> None:
    """The store a dry run opens: none at all where no file is, and a write on one that
    exists fails instead of landing (SQLite's read-only mode, not a convention)."""
    url = f"sqlite:///{tmp_path / 'state' / 'integrator.db'}"
    assert Store.open_read_only(url) is None
    assert not (tmp_path / "state").exists()
    Store(url).close()
    before = files(tmp_path)
    store = Store.open_read_only(url)
    assert store is not None
    try:
        assert store.runs.latest(None, 5) == []
        with pytest.raises(SQLAlchemyError, match="readonly database"):
            store.runs.start("order_flow")
    finally:
        store.close()
    assert files(tmp_path) == before
