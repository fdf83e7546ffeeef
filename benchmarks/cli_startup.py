"""Start-up time of the CLI (budgets: --version and --help 150 ms, validate and test-script 300 ms).

    python benchmarks/cli_startup.py [--runs 30] [--against DIR] [--check]

Runs each command many times, interleaved, on a copy of the project with the sandbox's
variables, as ``python -m integrator …`` and as the installed ``integrator`` script; prints the
median wall time of each, the same for ``python -c pass`` (the baseline, measured in the same
run: the interpreter's own start), the ratio to it and the time over it, and the median CPU
time (user + system: steadier than wall time on a busy machine). ``--against DIR`` also runs
the ``python -m integrator`` commands of another checkout (``git worktree add DIR REV``),
interleaved with these, for a before/after under the same load. Bytecode is written as an
installed package has it (PYTHONDONTWRITEBYTECODE is dropped). ``--check`` exits 1 when a
median of this tree is over its budget.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = "flows/tests/order_flow/with_discount.order.json"  # a recorded order, in the project
BUDGET_MS = {"--version": 150, "--help": 150, "validate": 300, "test-script": 300}
CASES = {
    "--version": ["--version"],
    "--help": ["--help"],
    "validate": ["validate"],
    "test-script": ["test-script", "scripts/enrich_order.py", "--input", ORDER],
}


@dataclass
class Case:
    label: str
    argv: list[str]
    budget: int | None = None
    pythonpath: str | None = None  # another checkout's tree first on the path
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def cases(against: Path | None) -> list[Case]:
    """The baseline, then each command of this tree, as a module and as the script."""
    py = [sys.executable]
    script = Path(sys.executable).parent / "integrator"
    out = [Case("python -c pass", [*py, "-c", "pass"])]
    for name, args in CASES.items():
        out.append(Case(f"python -m integrator {name}", [*py, "-m", "integrator", *args]))
        out[-1].budget, out[-1].pythonpath = BUDGET_MS[name], str(ROOT)
    if script.is_file():
        for name, args in CASES.items():
            out.append(Case(f"integrator {name}", [str(script), *args], BUDGET_MS[name], str(ROOT)))
    if against is not None:
        for name, args in CASES.items():
            argv = [*py, "-m", "integrator", *args]
            out.append(Case(f"{against.name}: {name}", argv, None, str(against)))
    return out


def run(case: Case, project: Path, env: dict[str, str]) -> None:
    """Run once; record the wall and CPU time (the child's, from wait4)."""
    if case.pythonpath is not None:
        env = {**env, "PYTHONPATH": case.pythonpath}
    t = time.perf_counter()
    proc = subprocess.Popen(case.argv, cwd=project, env=env, stdout=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(proc.pid, 0)
    case.wall.append(time.perf_counter() - t)
    case.cpu.append(usage.ru_utime + usage.ru_stime)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(case.argv)} failed ({proc.returncode}) in {project}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30, help="runs of each command")
    ap.add_argument("--against", type=Path, help="another checkout to compare with")
    ap.add_argument("--check", action="store_true", help="exit 1 when a budget is exceeded")
    args = ap.parse_args()
    from integrator.sandbox import SANDBOX_ENV

    todo = cases(args.against.resolve() if args.against else None)
    project = Path(tempfile.mkdtemp(prefix="cli-startup-"))
    try:
        shutil.copy(ROOT / "config.yaml", project)
        shutil.copytree(ROOT / "flows", project / "flows")
        shutil.copytree(ROOT / "scripts", project / "scripts")
        env = {**os.environ, **SANDBOX_ENV}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # the first run of each writes its .pyc
        for case in todo:  # each must work; caches get warm; then forget the first run
            run(case, project, env)
            case.wall.clear()
            case.cpu.clear()
        for _ in range(args.runs):  # interleaved: a busy moment slows every command alike
            for case in todo:
                run(case, project, env)
    finally:
        shutil.rmtree(project, ignore_errors=True)
    base = statistics.median(todo[0].wall) * 1000
    print(f"{args.runs} runs each, interleaved; {os.cpu_count()} CPUs; {sys.executable}")
    print(
        f"{'command':<36} {'median':>9} {'p90':>9} {'x base':>7} {'over base':>10} "
        f"{'CPU':>9}  budget"
    )
    over = []
    for case in todo:
        med = statistics.median(case.wall) * 1000
        p90 = statistics.quantiles(case.wall, n=10)[8] * 1000
        used = statistics.median(case.cpu) * 1000
        verdict = ""
        if case.budget is not None:
            verdict = f"{case.budget} ms" + (" OVER" if med > case.budget else "")
            if med > case.budget:
                over.append(case.label)
        print(
            f"{case.label:<36} {med:6.1f} ms {p90:6.1f} ms {med / base:6.2f}x {med - base:7.1f} ms "
            f"{used:6.1f} ms  {verdict}"
        )
    if args.check and over:
        sys.exit(f"over budget: {', '.join(over)}")


if __name__ == "__main__":
    main()
