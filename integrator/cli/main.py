"""The ``integrator`` command: one group, a module per command family.

Exit status: 0 all orders ok, 1 some orders failed (or the run stopped), 2 configuration error.
No traceback reaches the user unless ``--debug`` is given.
"""

from __future__ import annotations

import errno
import os
import sys
import traceback
from pathlib import Path
from typing import NoReturn

import click
from rich.console import Console

from integrator import __version__
from integrator.connectors.redact import scrub_urls
from integrator.errors import ConfigurationError, FatalError, IntegratorError, UserError

__all__ = ["cli", "main"]

err = Console(stderr=True, highlight=False, soft_wrap=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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


def _register() -> None:
    from integrator.cli import (
        daemon,
        history,
        reconcile,
        recovery,
        run,
        sandbox,
        validate,
        workbench,
    )

    for module in (run, validate, history, recovery, reconcile, sandbox, workbench, daemon):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


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
