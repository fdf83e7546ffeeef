"""The ``integrator`` command: one group, a module per command family.

Exit status: 0 all orders ok, 1 some orders failed (or the run stopped), 2 configuration error.
No traceback reaches the user unless ``--debug`` is given.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from integrator import __version__
from integrator.errors import ConfigurationError, FatalError, IntegratorError, UserError

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["LAZY_COMMANDS", "LazyGroup", "cli", "main"]

# Every command: its module (imported on first use, never to list or describe it) and the first
# paragraph of its help, which ``integrator --help`` shows. tests/test_startup.py keeps both
# equal to what the modules define: a command added to a module's COMMANDS goes here too.
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "alarms": (
        "alarms",
        "Every alarm of every flow with its state, as last evaluated (times in UTC).",
    ),
    "console": (
        "console",
        "Serve the operator console over the project's state store.",
    ),
    "daemon": ("daemon", "Run every flow in flows/ on its schedule until SIGTERM."),
    "demo": (
        "sandbox",
        "Start the sandbox in-process, run the order flow once against it, print a summary.",
    ),
    "flows": ("daemon", "List every flow with its schedule and its next three fire times."),
    "orders": (
        "history",
        "Look up orders: in the state store (show), or live from a flow's source (export).",
    ),
    "quarantine": (
        "recovery",
        "List quarantined orders with their last error, and the orders stuck in `sending`.",
    ),
    "reconcile": (
        "reconcile",
        "Compare the orders the OMS shows as sent with the orders the ERP holds.",
    ),
    "replay": (
        "recovery",
        "Run order NUMBER through its flow now, quarantine and backoff notwithstanding.",
    ),
    "resolve": ("recovery", "Settle an order whose last write's outcome is unknown, by hand."),
    "run-flow": ("run", "Run FLOW (its name, or the path of its file) once."),
    "runs": (
        "history",
        "The latest runs, newest first, with their counts and status (times in UTC).",
    ),
    "sandbox": ("sandbox", "Serve a sandbox Omnitron, ERP and Omnium on 127.0.0.1 until Ctrl-C."),
    "test-flow": ("workbench", "Run one recorded order through FLOW in the runner's trace mode."),
    "test-mapping": (
        "workbench",
        "Apply the Jolt chain in SPEC to the JSON in --input and print the output.",
    ),
    "test-script": (
        "workbench",
        "Run SCRIPT once, as the flow would, and print its result and attributes.",
    ),
    "validate": (
        "validate",
        "Check config.yaml and flows/*.yaml: keys, types, connectors, scripts, Jolt specs.",
    ),
}


class LazyGroup(click.Group):
    """A group that imports a command's module only when that command runs (or its own
    ``--help`` is asked for): listing the commands, ``--help`` and ``--version`` import none,
    so that they do not pay for the daemon's libraries."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module = importlib.import_module(f"integrator.cli.{self.lazy[cmd_name][0]}")
            for command in module.COMMANDS:
                if command.name is not None and command.name not in self.commands:
                    self.add_command(command)
        return self.commands.get(cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.NoSuchCommand as exc:  # suggest among every command's name
            raise click.exceptions.NoSuchCommand(
                exc.command_name, possibilities=self.list_commands(ctx), ctx=ctx
            ) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(map(len, names))
        rows = []
        for name in names:
            if name in self.commands:  # loaded already, or added directly
                command = self.commands[name]
                if command.hidden:
                    continue
                rows.append((name, command.get_short_help_str(limit)))
            else:
                stub = click.Command(name, help=self.lazy[name][1])  # click shortens it alike
                rows.append((name, stub.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def scrub_urls(text: str) -> str:
    """URL credentials masked (``connectors.redact``, imported when an error is shown, so that
    ``--version`` and ``--help`` do not load the configuration's modules)."""
    from integrator.connectors.redact import scrub_urls as scrub

    return scrub(text)


class _LazyConsole:
    """rich's Console for errors, built on first use (importing rich costs a start 25 ms)."""

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self._console: Console | None = None

    def print(self, *objects: Any, **kwargs: Any) -> None:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._kwargs)
        self._console.print(*objects, **kwargs)


err = _LazyConsole(stderr=True, highlight=False, soft_wrap=True)


@click.group(
    cls=LazyGroup,
    lazy=LAZY_COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--config",
    "-c",
    "config",
    type=click.Path(path_type=Path),
    default="config.yaml",
    show_default=True,
    envvar="INTEGRATOR_CONFIG",
    help="Project configuration (connectors, state store, logging).",
)
@click.option(
    "--state",
    "state",
    metavar="URL",
    envvar="INTEGRATOR_STATE",
    help="State store URL, instead of config.yaml's (sqlite:///path or postgresql+psycopg://).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@click.version_option(__version__, prog_name="integrator")
@click.pass_context
def cli(ctx: click.Context, config: Path, state: str | None, debug: bool) -> None:
    """Run scheduled integration flows between Omnitron and ERPs, exactly once per order.

    \b
    Start here:
      integrator demo                 sandbox + the order flow, once, with a summary
      integrator validate             check config.yaml and flows/*.yaml
      integrator run-flow order_flow  run one flow now
      integrator daemon               every flow on its schedule (flows: list them)
      integrator orders show NUMBER   what happened to an order
      integrator quarantine           orders that need a person (then: replay, resolve)
      integrator reconcile order_flow OMS "sent" vs ERP: missing, extra, amounts
      integrator test-script FILE     run a script once on an order JSON
      integrator test-mapping SPEC    apply a Jolt spec to an order JSON
    """
    ctx.ensure_object(dict)
    ctx.obj["config"] = config
    ctx.obj["state"] = state
    ctx.obj["debug"] = debug


def main(argv: list[str] | None = None) -> None:
    """Entry point: map errors to messages and exit statuses."""
    debug = "--debug" in (argv if argv is not None else sys.argv)
    try:
        code = cli.main(args=argv, prog_name="integrator", standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except (click.exceptions.Abort, KeyboardInterrupt):
        err.print(
            "interrupted: the run is recorded as interrupted; orders in flight resume next run"
        )
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)  # worker threads still finishing calls must not hold the exit
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except ConfigurationError as exc:
        n = len(exc.issues)
        err.print(f"[red]configuration error{'s' if n != 1 else ''}[/red] ({n}):", markup=True)
        for issue in exc.issues:
            err.print(scrub_urls(f"  {issue}"), markup=False)
        from integrator.cli.envfile import unset_hint

        hint = unset_hint(exc.issues)
        if hint:
            err.print(scrub_urls(hint), markup=False)
        sys.exit(2)
    except UserError as exc:
        err.print(scrub_urls(f"error: {exc}"), markup=False)
        sys.exit(2)
    except FatalError as exc:
        err.print(scrub_urls(f"error: {exc}"), markup=False)
        sys.exit(1)
    except IntegratorError as exc:
        err.print(scrub_urls(f"error: {exc}"), markup=False)
        sys.exit(1)
    except OSError as exc:
        said = user_os_error(exc)
        if said is None:
            _internal(exc, debug)
        err.print(scrub_urls(f"error: {said}"), markup=False)
        sys.exit(2)
    except Exception as exc:  # noqa: BLE001  # the entry point: every bug ends here
        _internal(exc, debug)


def _internal(exc: BaseException, debug: bool) -> NoReturn:
    """A bug: "internal error" (the traceback with --debug), exit status 1."""
    if debug:  # the traceback, as text (no local variables), its URLs' credentials masked
        err.print(scrub_urls(traceback.format_exc()), markup=False)
        sys.exit(1)
    err.print(
        scrub_urls(f"internal error: {type(exc).__name__}: {exc}")
        + "\nrun again with --debug for the traceback, and please report it",
        markup=False,
    )
    sys.exit(1)


def user_os_error(exc: OSError) -> str | None:
    """What to say about an error of the file system or the network that the user caused
    (a file missing or in the way, a permission, a full disk, a port in use), or None when
    it is not one of those (then it is a bug)."""
    name = exc.filename
    where = str(name) if name is not None else ""
    if exc.errno == errno.EADDRINUSE:
        return (
            "address already in use: another process listens on the port; stop it, or choose "
            "another port"
        )
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left{' for ' + where if where else ''}: free some space, then run again"
    if not where:
        return None
    what = {
        errno.EACCES: "permission denied: the user running integrator cannot use it; fix its "
        f"owner or mode (ls -ld {name}), or point integrator elsewhere (-c, --state)",
        errno.EPERM: f"operation not permitted; fix its owner or mode (ls -ld {name})",
        errno.ENOENT: "no such file or directory; check the path (paths in config.yaml and "
        "flows are relative to the project's directory)",
        errno.EEXIST: "exists, and is in the way (a file where a directory is needed?); move it",
        errno.ENOTDIR: "a part of this path is a file, not a directory; move it",
        errno.EISDIR: "is a directory; a file is needed here",
        errno.EROFS: "is on a read-only file system; point integrator elsewhere (-c, --state)",
    }.get(exc.errno or 0)
    return None if what is None else f"{where}: {what}"
