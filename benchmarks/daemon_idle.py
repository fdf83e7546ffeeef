"""The daemon's CPU while it waits (target: near zero).

    python benchmarks/daemon_idle.py [--seconds 20]

Starts ``integrator daemon`` on a copy of the project whose flow fires hourly, waits until it
is up, then reads its CPU time over the window from /proc. Baseline, in the same run: a
``python -c "import time; time.sleep(N)"`` process over the same window.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from order_flow import copy_project  # benchmarks/ is on sys.path when run as a script


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(cmd: list[str], cwd: Path, env: dict[str, str], warmup: float, seconds: float) -> float:
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        time.sleep(warmup)
        before = cpu_seconds(proc.pid)
        time.sleep(seconds)
        return cpu_seconds(proc.pid) - before
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    tmp = copy_project("integrator-idle-", 'cron: "*/5 * * * *"', 'cron: "0 * * * *"')
    try:
        env = {
            **os.environ,
            "OMNITRON_USERNAME": "u",
            "OMNITRON_PASSWORD": "p",
            "ERP_TOKEN": "t",
        }
        daemon = [sys.executable, "-m", "integrator", "daemon", "--http", "127.0.0.1:0"]
        sleeper = [sys.executable, "-c", f"import time; time.sleep({args.seconds + 10})"]
        d = measure(daemon, tmp, env, 3.0, args.seconds)
        s = measure(sleeper, tmp, env, 3.0, args.seconds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"idle over {args.seconds:.0f} s: daemon {d * 1000:.0f} ms CPU "
        f"({100 * d / args.seconds:.2f} % of a core); sleeping python {s * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
