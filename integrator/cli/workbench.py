"""The workbench: ``test-script`` and ``test-mapping``, on a laptop, writing nothing anywhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from integrator.errors import ConfigIssue, ConfigurationError
from integrator.logs import configure_logging
from integrator.pipeline.workbench import read_json, run_script, script_args
from integrator.scripting import SCRIPT_ERROR, load_script
from integrator.scripting.pool import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT

__all__ = ["COMMANDS", "read_json"]

ENTRIES = {"script": "process", "post_script": "process", "check_response": "check_response"}


def _attrs(values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--attr")
        out[key] = value
    return out


def _constants(ctx: click.Context, flow: str) -> dict[str, Any]:
    """``--flow``: that flow's constants (``vars:`` of config.yaml and the flow)."""
    from integrator.cli.envfile import load_project_env
    from integrator.config.load import flow_constants

    load_project_env(ctx)
    return flow_constants(Path(ctx.find_root().obj["config"]), flow)


def _print(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, indent=2, default=str))


@click.command("test-script")
@click.argument("script", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--input", "input_file", type=click.Path(path_type=Path), help="Order JSON.")
@click.option("--attr", "attrs", multiple=True, metavar="KEY=VALUE", help="An attribute.")
@click.option(
    "--step",
    type=click.Choice(sorted(ENTRIES)),
    default="script",
    show_default=True,
    help="Which step the script is written for.",
)
@click.option("--request", "request_file", type=click.Path(path_type=Path), help="check_response")
@click.option("--response", "response_file", type=click.Path(path_type=Path), help="check_response")
@click.option("--timeout", type=float, default=DEFAULT_TIMEOUT, show_default=True, help="Seconds.")
@click.option(
    "--flow", "flow", metavar="FLOW", help="Give the script FLOW's constants (vars.NAME)."
)
@click.pass_context
def test_script_cmd(
    ctx: click.Context,
    script: Path,
    input_file: Path | None,
    attrs: tuple[str, ...],
    step: str,
    request_file: Path | None,
    response_file: Path | None,
    timeout: float,
    flow: str | None,
) -> int:
    """Run SCRIPT once, as the flow would, and print its result and attributes.

    \b
    Prints {"result_data": ..., "attributes": {...}}: result_data is the script's output,
    parsed when it is JSON; attributes are those the script set or changed (with
    log.script.error on failure). Native (def process) and Akinon/NiFi ExecuteScript scripts
    both work; the runtime is detected. With --flow, the script gets that flow's constants
    as attributes vars.NAME, as in a run (an --attr of the same name wins). Exit status 1
    when the script fails.

    \b
    Examples:
      integrator test-script scripts/enrich_order.py --input order.json --attr log.x=1
      integrator test-script scripts/compat/check_response.py --step check_response \\
          --request request.json --response response.json
    """
    loaded, issues = load_script(script, ENTRIES[step], str(script), "script", timeout)
    if loaded is None:
        raise ConfigurationError(issues)
    if step == "check_response":
        if request_file is None or response_file is None:
            raise click.UsageError("--step check_response needs --request FILE and --response FILE")
        args = script_args(
            step,
            read_json(input_file, "--input") if input_file is not None else None,
            read_json(request_file, "--request"),
            read_json(response_file, "--response"),
        )
    else:
        if input_file is None:
            raise click.UsageError(f"--step {step} needs --input FILE (the order JSON)")
        args = script_args(step, read_json(input_file, "--input"))
    before = _attrs(attrs)
    if flow is not None:
        from integrator.pipeline.exchange import var_attributes

        before = {**var_attributes(_constants(ctx, flow)), **before}
    configure_logging("INFO")  # what the script logs goes to stderr, beside the JSON
    # as the flow calls it: the arguments it declares, in a worker, with its time limit
    ran = run_script(loaded, before, args, DEFAULT_MEMORY_MB)
    _print(ran.as_dict())
    failed = ran.error is not None
    written = ran.attributes
    if failed:
        click.echo(f"script failed: {written.get(SCRIPT_ERROR)}", err=True)
        return 1
    return 0


@click.command("test-mapping")
@click.argument("spec", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--input", "input_file", type=click.Path(path_type=Path), required=True)
@click.option("--context", "context_file", type=click.Path(path_type=Path), help="For ^path.")
@click.option("--flow", "flow", metavar="FLOW", help="FLOW's constants as context (^vars.NAME).")
@click.pass_context
def test_mapping_cmd(
    ctx: click.Context,
    spec: Path,
    input_file: Path,
    context_file: Path | None,
    flow: str | None,
) -> int:
    """Apply the Jolt chain in SPEC to the JSON in --input and print the output.

    A spec that cannot be built is reported with the operation's index and what is wrong
    with it (exit status 2). Modify operations read the context with ^path: --context FILE
    gives it (a JSON object); --flow FLOW adds that flow's constants as ^vars.NAME, as the
    mapping stage does (a "vars" member of --context wins).

    \b
    Example:
      integrator test-mapping flows/specs/order_to_erp.json --input order.json
      integrator test-mapping flows/specs/order_to_erp.json --input order.json --flow order_flow
    """
    from integrator.mapping.jolt import MappingSpecError, apply_chain

    chain = read_json(spec, "spec")
    data = read_json(input_file, "--input")
    context = read_json(context_file, "--context") if context_file else None
    if flow is not None:
        if context is not None and not isinstance(context, dict):
            raise click.UsageError(f"{context_file}: with --flow, the context is a JSON object")
        context = {"vars": _constants(ctx, flow), **(context or {})}
    try:
        _print(apply_chain(chain, data, context))
    except MappingSpecError as exc:
        raise ConfigurationError([ConfigIssue(str(spec), "spec", str(exc))]) from None
    return 0


@click.command("test-flow")
@click.argument("flow", required=False)
@click.option(
    "--order", "--input", "order_file", type=click.Path(path_type=Path), help="Order JSON."
)
@click.option(
    "--response",
    "response_file",
    type=click.Path(path_type=Path),
    help='The ERP\'s answer: its body, or {"status": 201, "body": ...}.',
)
@click.option(
    "--status",
    type=click.IntRange(100, 599),
    help="The answer's status code (default: the recording's, else 201).",
)
@click.option("--attr", "attrs", multiple=True, metavar="KEY=VALUE", help="An attribute.")
@click.option("--golden", is_flag=True, help="Run the golden tests in flows/tests/.")
@click.option("--update", is_flag=True, help="With --golden: rewrite the expected files.")
@click.pass_context
def test_flow_cmd(
    ctx: click.Context,
    flow: str | None,
    order_file: Path | None,
    response_file: Path | None,
    status: int | None,
    attrs: tuple[str, ...],
    golden: bool,
    update: bool,
) -> int:
    """Run one recorded order through FLOW in the runner's trace mode.

    Every stage runs as in a real run, except that nothing calls out and nothing is
    written: stages that would call Omnitron, the ERP or a queue show the requests they
    would send instead; the ERP's answer to the write comes from --response, or is what the
    sandbox ERP would answer. Needs no credentials. Prints each stage's output and the
    attributes it changed, the ERP request, the mapping data for mark_sent and every
    attribute at the end, grouped (log. and other); when a stage fails, "failure" names it
    with every attribute up to there. Exit status 1 when a stage fails.

    \b
    The answer's status code: --status, or a recording {"status": 202, "body": {...}} (a file
    of exactly those two keys; an ERP answer of that very shape is given wrapped in one), else
    201. It shows in write.status. The write's answer rules read a recording as they read a
    real answer (a JSON-RPC error in a 200 is refused), and a status that is not 2xx fails
    the write as a real run would.
    `integrator orders export NUMBER` writes an order from the source as the JSON --order
    takes (--input is the same option).

    \b
    Golden tests, for CI: flows/tests/<flow>/<case>.order.json holds an order and
    <case>.expected.json the ERP payload it must produce.
      integrator test-flow --golden             every case; a diff for each mismatch
      integrator test-flow --golden --update    accept the current payloads
    """
    from integrator.cli.common import load_quiet
    from integrator.pipeline.trace import find_golden, recording, sandbox_answer, trace_flow

    project = load_quiet(ctx)
    if golden:
        cases = find_golden(project.app.flows_dir, flow)
        if not cases:
            raise click.UsageError(
                f"no golden cases in {project.app.flows_dir / 'tests'}"
                + (f"/{flow}" if flow else "")
                + ": add <flow>/<case>.order.json and <case>.expected.json (integrator "
                "orders export NUMBER --golden CASE writes both from a live order)"
            )
        from integrator.pipeline.workbench import golden as run_golden

        failed = 0
        for g in run_golden(project, flow, update):
            if g.status == "updated":
                click.echo(f"updated {g.reason}")
            elif g.status == "ok":
                click.echo(f"ok   {g.flow}/{g.case}")
            else:
                failed += 1
                click.echo(f"FAIL {g.flow}/{g.case}: {g.reason}")
                for line in g.diff:
                    click.echo("  " + line)
        click.echo(f"{len(cases) - failed} passed, {failed} failed")
        return 1 if failed else 0
    if flow is None or order_file is None:
        raise click.UsageError("give FLOW and --order FILE, or --golden")
    built = project.flows.get(flow)
    if built is None:
        raise click.UsageError(
            f"no valid flow named {flow!r}; flows: {', '.join(sorted(project.flows)) or 'none'}"
        )
    order = read_json(order_file, "--order")
    if not isinstance(order, dict):
        raise click.UsageError(f"{order_file}: expected an order object")
    response, recorded_status = (
        recording(read_json(response_file, "--response")) if response_file else (None, None)
    )
    code = status if status is not None else recorded_status if recorded_status else 201
    if not 100 <= code <= 599:
        raise ConfigurationError(
            [
                ConfigIssue(
                    str(response_file),
                    "status",
                    f"expected a status code from 100 to 599, got {code}",
                )
            ]
        )
    trace = trace_flow(
        project, built, order, _attrs(attrs), response, status=code, answer=sandbox_answer
    )
    _print(trace.as_dict())
    if trace.error:
        shown = trace.as_dict()["error"]  # masked, as the JSON shows it
        click.echo(f"flow failed: {shown}", err=True)
        click.echo(
            f'failed stage: {trace.failed_stage} (the attributes up to there: "failure" in '
            "the output)",
            err=True,
        )
        return 1
    return 0


COMMANDS = [test_script_cmd, test_mapping_cmd, test_flow_cmd]
