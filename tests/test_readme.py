"""The README's commands, run, so that they cannot rot.

- Every ``integrator …`` line in a fenced ``sh`` block parses (options, arguments, types) and
  its command's ``--help`` runs, showing every option the line uses.
- The set-up line runs (its venv and pip parts are what this test runs in), in a copy of the
  project, in a newcomer's environment: ``integrator demo``.
- The "Using it" block runs for real, in its order, in a copy of the project with no exported
  variable: ``integrator sandbox`` in the background (on free ports: its .env says where),
  then every other line; the few that cannot run here say why (``NOT_RUN``).
"""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import click
import pytest
from support import ROOT, free_port, make_project
from support.newcomer import Proc, cli

from integrator.cli.main import cli as integrator_cli

README = ROOT / "README.md"

# "Using it" lines that are not run for real here, by command path, and why.
NOT_RUN: dict[tuple[str, ...], str] = {
    ("sandbox",): "started first, in the background (the others need it)",
    ("daemon",): "runs until SIGTERM (tests/test_daemon.py, tests/test_setup.py run it)",
    ("console",): "serves until Ctrl-C (tests/test_console*.py run it)",
    ("resolve",): "needs the ERP's answer in a file (tests/test_ledger_cases.py settles orders)",
}
# Lines that run for real and end otherwise than with exit status 0, and what they say.
EXPECTED: dict[tuple[str, ...], tuple[int, str]] = {
    ("replay",): (1, "was not listed by the source"),  # the order was sent by run-flow above
}


def sh_blocks(text: str) -> list[tuple[str, list[list[str]]]]:
    """(section heading, command lines as words) of every fenced ``sh`` block, in order.
    Continuation lines are joined, comments dropped, ``[optional]`` brackets removed."""
    blocks: list[tuple[str, list[list[str]]]] = []
    heading, inside = "", False
    lines: list[str] = []
    for line in text.splitlines():
        if inside:
            if line.startswith("```"):
                joined = "\n".join(lines).replace("\\\n", " ")
                words = [shlex.split(cmd, comments=True) for cmd in joined.splitlines()]
                blocks.append((heading, [[w.strip("[]") for w in ws] for ws in words if ws]))
                inside, lines = False, []
            else:
                lines.append(line)
        elif line.startswith("```sh"):
            inside = True
        elif line.startswith("#"):
            heading = line.lstrip("#").strip()
    return blocks


BLOCKS = sh_blocks(README.read_text(encoding="utf-8"))


def section(title: str) -> list[list[str]]:
    """The command lines of the sh blocks under ``title``."""
    return [cmd for heading, cmds in BLOCKS if heading == title for cmd in cmds]


def integrator_lines() -> list[list[str]]:
    """Every ``integrator`` command of every block, without the program's name."""
    return [cmd[1:] for _h, cmds in BLOCKS for cmd in cmds if cmd[0] == "integrator"]


def parse(args: list[str]) -> tuple[str, ...]:
    """Parse ``args`` as the CLI would (without running anything); the command's path.
    Raises click's UsageError for an unknown option, a bad value, a missing argument."""
    cmd: click.Command = integrator_cli
    ctx = click.Context(cmd, info_name="integrator")
    path: list[str] = []
    rest = list(args)
    while isinstance(cmd, click.Group):
        rest = click.Command.parse_args(cmd, ctx, rest)  # the group's own options
        if not rest and cmd.invoke_without_command:
            break  # `integrator quarantine`: the group itself runs
        if not rest:
            raise click.UsageError(f"{' '.join(path) or 'integrator'}: a command is missing")
        name, sub, rest = cmd.resolve_command(ctx, rest)
        assert name is not None and sub is not None
        path.append(name)
        cmd = sub
        if not isinstance(cmd, click.Group):
            cmd.make_context(name, rest, parent=ctx)  # options, types, arguments
        else:
            ctx = click.Context(cmd, info_name=name, parent=ctx)
    return tuple(path)


def test_the_readme_has_the_blocks_this_test_reads() -> None:
    using = section("Using it")
    assert len(using) >= 10 and all(cmd[0] == "integrator" for cmd in using), using
    setup = section("Set up on a fresh machine")
    assert setup and "integrator demo" in " ".join(setup[0]), setup


@pytest.mark.parametrize("args", integrator_lines(), ids=lambda a: " ".join(a)[:60])
def test_every_readme_command_parses(args: list[str]) -> None:
    try:
        parse(args)
    except click.UsageError as exc:
        pytest.fail(f"README: integrator {shlex.join(args)}: {exc.format_message()}")


def test_every_readme_command_has_a_help_showing_its_options() -> None:
    options: dict[tuple[str, ...], set[str]] = {}
    global_options = set(re.findall(r"--[a-z][a-z-]*", cli(ROOT, "--help").out))
    for args in integrator_lines():
        used = {w.split("=", 1)[0] for w in args if w.startswith("--")}
        options.setdefault(parse(args), set()).update(used)
    for path, used in sorted(options.items()):
        r = cli(ROOT, *path, "--help")
        assert r.code == 0 and r.out.startswith("Usage: integrator"), (path, r)
        shown = set(re.findall(r"--[a-z][a-z-]*", r.out)) | global_options
        assert used <= shown, (path, used - shown)


def test_the_setup_line_runs(tmp_path: Path) -> None:
    """``python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/integrator demo``:
    the venv is this one (its dependencies installed, as pip would), the demo runs."""
    project = make_project(tmp_path, {}).root
    for line in section("Set up on a fresh machine"):
        steps = " ".join(line).split(" && ")
        for step in steps:
            words = step.split()
            if words[:3] == ["python3", "-m", "venv"]:
                continue  # this test runs in a venv
            if words[:2] == [".venv/bin/pip", "install"] and words[2:] == ["-e", "."]:
                pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
                for req in pyproject["project"]["dependencies"]:
                    name = re.split(r"[<>=!~\[ ]", req, maxsplit=1)[0]
                    importlib.metadata.version(name)  # installed, as pip would have done
            elif words[0] == ".venv/bin/integrator":
                r = cli(project, *words[1:])
                assert r.code == 0 and r.out, (step, r)
            elif words[:2] == ["bash", ".ci/run"]:  # the whole check runs this suite itself
                subprocess.run(["bash", "-n", str(ROOT / ".ci" / "run")], check=True)
            else:
                pytest.fail(f"README set-up step not known to this test: {step!r}")


def test_using_it_runs_for_real_without_exported_variables(tmp_path: Path) -> None:
    project = make_project(tmp_path, {}).root
    using = section("Using it")
    line = next(cmd for cmd in using if parse(cmd[1:]) == ("sandbox",))
    ports = [str(free_port()) for _ in range(5)]
    sb = Proc(
        project,
        *line[1:],
        *("--omnitron-port", ports[0], "--erp-port", ports[1], "--omnium-port", ports[2]),
        *("--jsonrpc-erp-port", ports[3], "--soap-erp-port", ports[4]),
    )
    try:
        assert "wrote .env" in sb.wait_line(".env")
        ran = []
        for cmd in using:
            path = parse(cmd[1:])
            if path in NOT_RUN:
                continue
            code, says = EXPECTED.get(path, (0, ""))
            r = cli(project, *cmd[1:])
            assert r.code == code and says in r.out + r.err, (cmd, r)
            assert "internal error" not in r.err and "Traceback" not in r.err, (cmd, r)
            ran.append(path)
    finally:
        assert sb.stop() == 0, sb.rest()
    assert ("validate",) in ran and ("run-flow",) in ran and len(ran) >= 10, ran


def test_readme_names_the_vendored_htmx() -> None:
    from integrator.console import HTMX_VERSION

    assert f"htmx {HTMX_VERSION}" in (ROOT / "README.md").read_text(encoding="utf-8")
