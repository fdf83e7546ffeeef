"""Start-up time of the CLI (budgets: --version and --help 150 ms, validate and test-script 300 ms).

    python benchmarks/cli_startup.py [--runs 30]

Runs each command many times, interleaved, on a copy of the project with the sandbox's
variables, as ``python -m integrator …`` and as the installed ``integrator`` script; prints the
median wall time of each, the same for ``python -c pass`` (the baseline, measured in the same
run: the interpreter's own start), the ratio to it and the time over it, and the median CPU
time (user + system, steadier than wall time on a busy machine). Bytecode is written as an
installed package has it (PYTHONDONTWRITEBYTECODE is dropped for the commands). ``--check``
exits 1 when a median is over its budget.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = "flows/tests/order_flow/with_discount.order.json"  # a recorded order, in the project
BUDGET_MS = {"--version": 150, "--help": 150, "validate": 300, "test-script": 300}


def commands() -> list[tuple[str, list[str], int | None]]:
    """(label, argv, budget in ms) of every measured command."""
    py = [sys.executable]
    script = Path(sys.executable).parent / "integrator"
    cases: list[tuple[str, list[str]]] = [
        ("--version", ["--version"]),
        ("--help", ["--help"]),
        ("validate", ["validate"]),
        (
            "test-script",
            ["test-script", "scripts/enrich_order.py", "--input", ORDER],
        ),
    ]
    out: list[tuple[str, list[str], int | None]] = [("python -c pass", [*py, "-c", "pass"], None)]
    for name, args in cases:
        out.append(
            (f"python -m integrator {name}", [*py, "-m", "integrator", *args], BUDGET_MS[name])
        )
    if script.is_file():
        for name, args in cases:
            out.append((f"integrator {name}", [str(script), *args], BUDGET_MS[name]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30, help="runs of each command")
    ap.add_argument("--check", action="store_true", help="exit 1 when a budget is exceeded")
    args = ap.parse_args()
    from integrator.sandbox import SANDBOX_ENV

    project = Path(tempfile.mkdtemp(prefix="cli-startup-"))
    try:
        shutil.copy(ROOT / "config.yaml", project)
        shutil.copytree(ROOT / "flows", project / "flows")
        shutil.copytree(ROOT / "scripts", project / "scripts")
        env = {**os.environ, **SANDBOX_ENV}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # the first run of each writes its .pyc
        cases = commands()
        for _label, argv, _budget in cases:  # each must work, and disk caches get warm
            done = subprocess.run(argv, cwd=project, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr}")
        samples: dict[str, list[float]] = {label: [] for label, _a, _b in cases}
        cpu: dict[str, list[float]] = {label: [] for label, _a, _b in cases}
        for _ in range(args.runs):  # interleaved: a busy moment slows every command alike
            for label, argv, _budget in cases:
                t = time.perf_counter()
                proc = subprocess.Popen(argv, cwd=project, env=env, stdout=subprocess.DEVNULL)
                _pid, status, usage = os.wait4(proc.pid, 0)
                samples[label].append(time.perf_counter() - t)
                proc.returncode = os.waitstatus_to_exitcode(status)
                if proc.returncode != 0:
                    sys.exit(f"{' '.join(argv)} failed ({proc.returncode})")
                cpu[label].append(usage.ru_utime + usage.ru_stime)
    finally:
        shutil.rmtree(project, ignore_errors=True)
    base = statistics.median(samples["python -c pass"]) * 1000
    print(f"{args.runs} runs each, interleaved; {os.cpu_count()} CPUs; {sys.executable}")
    print(
        f"{'command':<36} {'median':>9} {'p90':>9} {'x base':>7} {'over base':>10} "
        f"{'CPU':>9} {'budget':>7}"
    )
    over_budget = []
    for label, _argv, budget in cases:
        med = statistics.median(samples[label]) * 1000
        p90 = statistics.quantiles(samples[label], n=10)[8] * 1000
        used = statistics.median(cpu[label]) * 1000
        verdict = ""
        if budget is not None:
            verdict = f"{budget} ms" + (" OVER" if med > budget else "")
            if med > budget:
                over_budget.append(label)
        print(
            f"{label:<36} {med:6.1f} ms {p90:6.1f} ms {med / base:6.2f}x {med - base:7.1f} ms "
            f"{used:6.1f} ms {verdict:>7}"
        )
    if args.check and over_budget:
        sys.exit(f"over budget: {', '.join(over_budget)}")


if __name__ == "__main__":
    main()
