"""A fast CLI: what each quick command imports, guarded without timing anything.

``integrator --version`` and ``--help`` must start in under 150 ms, ``validate`` and
``test-script`` in under 300 ms (``benchmarks/cli_startup.py`` measures it). A wall-clock
assertion would be flaky on a busy machine, so these tests assert the cause instead: the
modules that each command imports, read from ``python -X importtime`` of the real command.
The daemon's and a run's libraries (requests, SQLAlchemy, APScheduler, Prometheus, waitress,
the brokers' clients) cost 0.3 s together and must load only when a command needs them.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from support import Project, fresh_python, make_project

from integrator.sandbox import SANDBOX_ENV

# What a run, the daemon or an exporter needs, and no quick command does.
RUN_ONLY = {
    "apscheduler",
    "azure",
    "confluent_kafka",
    "pika",
    "prometheus_client",
    "psycopg",
    "requests",
    "sqlalchemy",
    "urllib3",
    "waitress",
}
# What checking a flow needs (validate), and printing a version or the help does not.
CHECKING = {"croniter", "jmespath", "jsonpath_ng", "pyjolt", "structlog", "rich"}
ORDER = "flows/tests/order_flow/with_discount.order.json"


@pytest.fixture
def offline(tmp_path: Path) -> Project:
    """The project with the sandbox's variables, and no server (nothing here calls out)."""
    return make_project(tmp_path, dict(SANDBOX_ENV))


def imported(project: Project, *args: str) -> set[str]:
    """The top-level packages that ``integrator ARGS`` imports, from ``-X importtime``."""
    return {name.split(".")[0] for name in modules(project, *args)}


def modules(project: Project, *args: str) -> set[str]:
    """The modules that ``integrator ARGS`` imports, from ``-X importtime``."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "integrator", *args],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **project.env},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    names = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                names.add(name)
    assert "integrator.cli.main" in names, done.stderr[-2000:]  # importtime worked
    return names


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["-h"]])
def test_version_and_help_import_no_command_module(offline: Project, args: list[str]) -> None:
    names = imported(offline, *args)
    unwanted = RUN_ONLY | CHECKING | {"yaml"}  # nor the configuration's reader
    assert not names & unwanted, sorted(names & unwanted)


def test_help_imports_no_command_module(offline: Project) -> None:
    """``--help`` lists every command with its help, without importing any of them."""
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from integrator.cli.main import cli\n"
        "r = CliRunner().invoke(cli, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(sorted(m for m in sys.modules if m.startswith('integrator.cli.')))\n"
    )
    out = fresh_python(code)
    assert out.stdout.strip() == "['integrator.cli.main']", out.stdout + out.stderr


def test_validate_imports_no_run_library(offline: Project) -> None:
    loaded = modules(offline, "validate")
    names = {name.split(".")[0] for name in loaded}
    unwanted = RUN_ONLY | {"structlog"}  # nothing logs while checking
    assert not names & unwanted, sorted(names & unwanted)
    assert "integrator.sandbox.seed" in loaded  # the shape of Omnitron's orders, from the seed
    servers = {"integrator.sandbox.base", "http.server"}  # and not the servers
    assert not loaded & servers, sorted(loaded & servers)
    assert {"pyjolt", "jmespath"} <= names  # it does check the specs and paths


def test_test_script_imports_no_run_or_mapping_library(offline: Project) -> None:
    names = imported(offline, "test-script", "scripts/enrich_order.py", "--input", ORDER)
    unwanted = RUN_ONLY | CHECKING  # a script that does not log needs no structlog either
    assert not names & unwanted, sorted(names & unwanted)


def test_a_run_still_loads_what_it_needs_on_first_use(offline: Project) -> None:
    """The lazy imports are deferred, not lost: ``flows`` builds APScheduler's triggers."""
    r = offline.run("flows")
    assert r.code == 0, r.err
    assert "cron */5 * * * * (Europe/Istanbul)" in r.out


# ------------------------------------------------------------------ the lazy group


def _eager_commands() -> dict[str, tuple[str, click.Command]]:
    """Every command the CLI modules define: name → (module, command)."""
    from integrator.cli.main import LAZY_COMMANDS

    found: dict[str, tuple[str, click.Command]] = {}
    for module_name in sorted({m for m, _h in LAZY_COMMANDS.values()}):
        module = importlib.import_module(f"integrator.cli.{module_name}")
        for command in module.COMMANDS:
            assert command.name is not None
            found[command.name] = (module_name, command)
    return found


def test_the_lazy_table_names_every_command_with_its_module_and_help() -> None:
    """A command added to a module's COMMANDS, moved, or whose help changed, must be in
    ``LAZY_COMMANDS`` as it is (or ``--help`` would list it wrongly, or not at all)."""
    from integrator.cli.main import LAZY_COMMANDS

    eager = _eager_commands()
    assert sorted(LAZY_COMMANDS) == sorted(eager), "update LAZY_COMMANDS in integrator/cli/main.py"
    for name, (module_name, command) in eager.items():
        lazy_module, lazy_help = LAZY_COMMANDS[name]
        assert lazy_module == module_name, f"{name}: defined in integrator/cli/{module_name}.py"
        for limit in (30, 45, 80, 200):  # as click shortens it for --help at any width
            stub = click.Command(name, help=lazy_help)
            assert stub.get_short_help_str(limit) == command.get_short_help_str(limit), (
                f"{name}: LAZY_COMMANDS has {lazy_help!r}; the command's help starts "
                f"{command.get_short_help_str(200)!r}"
            )


def test_lazy_help_is_the_help_of_the_loaded_commands() -> None:
    """``--help`` before any command module is loaded prints what it prints after."""
    code = (
        "from click.testing import CliRunner\n"
        "from integrator.cli.main import cli\n"
        "lazy = CliRunner().invoke(cli, ['--help']).output\n"
        "ctx = cli.make_context('integrator', ['--help'], resilient_parsing=True)\n"
        "for name in cli.list_commands(ctx):\n"
        "    cli.get_command(ctx, name)\n"
        "eager = CliRunner().invoke(cli, ['--help']).output\n"
        "assert 'validate' in lazy and 'test-script' in lazy, lazy\n"
        "print('same' if lazy == eager else lazy + '\\n----\\n' + eager)\n"
    )
    out = fresh_python(code)
    assert out.stdout.strip() == "same", out.stdout + out.stderr


def test_a_misspelt_command_is_still_answered_with_the_right_one(offline: Project) -> None:
    r = offline.run("vaildate")
    assert r.code == 2
    assert "No such command 'vaildate'" in r.err and "Did you mean 'validate'?" in r.err


def test_subcommands_of_lazy_groups_work(offline: Project) -> None:
    r = offline.run("quarantine", "release", "--help")
    assert r.code == 0 and "Release the quarantined orders" in r.out, r.err
    r = offline.run("orders", "show", "424242")
    assert r.code == 1 and "424242 is not in the state store" in (r.out + r.err), r.err


# ------------------------------------------------------------------ lazy package exports

LAZY_PACKAGES = [
    "integrator.config",
    "integrator.connectors",
    "integrator.mapping",
    "integrator.pipeline",
    "integrator.sandbox",
    "integrator.scheduler",
    "integrator.state",
]


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_every_lazy_export_resolves_to_its_definition(package: str) -> None:
    module = importlib.import_module(package)
    for name in module.__all__:
        value = getattr(module, name)
        assert value is not None, f"{package}.{name}"
        home = getattr(value, "__module__", None)
        if home is not None and home.startswith("integrator."):
            assert home == package or home.startswith(package + "."), f"{package}.{name}: {home}"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        module.nope  # noqa: B018  # a typo is an AttributeError, not None


def test_the_cron_trigger_is_still_importable_from_schedule() -> None:
    from integrator.scheduler.cron import CronTrigger
    from integrator.scheduler.schedule import CronTrigger as FromSchedule

    assert FromSchedule is CronTrigger


# ------------------------------------------------------------------ logging, configured late


def test_a_scripts_log_is_rendered_by_the_configured_logger(offline: Project) -> None:
    """test-script starts without structlog; a script that logs loads it, and the line goes
    to stderr through the configuration (an unconfigured structlog prints to stdout)."""
    script = offline.root / "scripts" / "compat" / "noisy.py"
    script.write_text(
        "import json\n"
        "data = json.loads(input_text)\n"
        "log.warn('seen order {}', data['number'])\n"
        "outputStream.write(json.dumps(data))\n"
    )
    r = offline.run("test-script", str(script), "--input", ORDER)
    assert r.code == 0, r.err
    assert json.loads(r.out)["runtime"] == "compat"  # stdout: the JSON alone
    assert "script_log" in r.err and "seen order 202611000007" in r.err, r.err


def test_logging_configured_before_structlog_loads_applies_when_it_does() -> None:
    """The redactor and the level hold for loggers of modules imported afterwards."""
    code = (
        "import sys\n"
        "from integrator.logs import configure_logging\n"
        "configure_logging('WARNING', secrets=['late-Secret-123'])\n"
        "assert 'structlog' not in sys.modules\n"
        "import structlog\n"
        "log = structlog.get_logger('late')\n"
        "log.info('not shown')\n"
        "log.warning('shown', note='has late-Secret-123 in it', password='pw-1')\n"
    )
    out = fresh_python(code)
    assert out.stdout == ""
    assert "shown" in out.stderr and "not shown" not in out.stderr, out.stderr
    assert "late-Secret-123" not in out.stderr and "pw-1" not in out.stderr, out.stderr
    assert "has *** in it" in out.stderr, out.stderr
