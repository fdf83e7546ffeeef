"""The long chaos run: ``python tests/chaos/run.py --orders 5000 --kills 200``.

Misbehaving proxies stand in front of both servers unless ``--no-hostile`` is given.

Stopped early (Ctrl-C, SIGTERM), it kills the runner it started and removes its temporary
project before it exits.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).parents[1]))  # tests/, for support

from support import make_project
from support.chaos import prepare, run_chaos, seeded

from integrator.sandbox import running_sandbox


def _stop(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds: the runner is killed, the project removed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--orders", type=int, default=5000, help="unsent orders to deliver (at least)")
    ap.add_argument("--kills", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--max-seconds", type=float, default=3600, help="fail when the test takes longer"
    )
    ap.add_argument(
        "--no-hostile",
        dest="hostile",
        action="store_false",
        help="no misbehaving proxies in front of the servers (only the sandbox's own faults)",
    )
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, _stop)
    with (
        tempfile.TemporaryDirectory(prefix="integrator-chaos-") as tmp,
        running_sandbox(seeded(args.orders), seed=args.seed) as sb,
    ):
        project = make_project(Path(tmp), sb.env())
        prepare(project.root)
        report = run_chaos(
            sb,
            project.root,
            project.env,
            kills=args.kills,
            seed=args.seed,
            max_seconds=args.max_seconds,
            hostile=args.hostile,
        )
    print(report.line())
    if report.hostile_modes:
        print("hostile answers:", report.hostile_modes)
    bad = report.problems()
    print("problems:", bad or "none")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
