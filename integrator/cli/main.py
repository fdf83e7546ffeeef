"""The ``integrator`` command: one group, a module per command family.

Exit status: 0 all orders ok, 1 some orders failed (or the run stopped), 2 configuration error.
No traceback reaches the user unless ``--debug`` is given.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

import click
from rich.console import Console

from integrator import __version__
from integrator.connectors.redact import scrub_urls
from integrator.errors import ConfigurationError, FatalError, IntegratorError

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
        sys.exit(2)
    except FatalError as exc:
        err.print(scrub_urls(f"error: {exc}"), markup=False)
        sys.exit(1)
    except IntegratorError as exc:
        err.print(scrub_urls(f"error: {exc}"), markup=False)
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001  # the entry point: every bug ends here
        if debug:  # the traceback, as text (no local variables), its URLs' credentials masked
            err.print(scrub_urls(traceback.format_exc()), markup=False)
            sys.exit(1)
        err.print(
            scrub_urls(f"internal error: {type(exc).__name__}: {exc}")
            + "\nrun again with --debug for the traceback, and please report it",
            markup=False,
        )
        sys.exit(1)
