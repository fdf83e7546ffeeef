"""The CI variant of the crash test: 200 orders, 20 SIGKILLs mid-run, faults on both servers.

The long variant: ``python tests/chaos/run.py --orders 5000 --kills 200``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support import make_project
from support.chaos import prepare, run_chaos, seeded

from integrator.sandbox import running_sandbox


@pytest.mark.slow
def test_chaos_200_orders_20_kills(tmp_path: Path) -> None:
    """Every order in the ERP once and marked sent, only the poisoned ones quarantined, every
    killed run recorded as interrupted; within 6 minutes and 130 runs, or the test fails."""
    with running_sandbox(seeded(200), seed=11) as sb:
        project = make_project(tmp_path, sb.env())
        prepare(project.root)
        report = run_chaos(sb, project.root, project.env, kills=20, seed=5, max_seconds=360)
    print(report.line())
    assert report.orders >= 200 and report.kills == 20 and report.faults > 20
    assert report.problems() == {}, report.line()
