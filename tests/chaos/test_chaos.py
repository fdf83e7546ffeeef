"""The CI variant of the crash test: 200 orders, 20 SIGKILLs, faults on both servers.

The long variant: ``python tests/chaos/run.py --orders 5000 --kills 200``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_project
from harness import prepare, run_chaos
from run import seeded

from integrator.sandbox import running_sandbox


@pytest.mark.slow
def test_chaos_200_orders_20_kills(tmp_path: Path) -> None:
    with running_sandbox(seeded(200), seed=11) as sb:
        project = make_project(tmp_path, sb.env())
        prepare(project.root)
        report = run_chaos(sb, project.root, project.env, kills=20, seed=5)
    print(report.line())
    assert report.orders >= 200 and report.kills == 20 and report.faults > 20
    assert report.lost == [] and report.duplicated == []
    assert report.unmarked == [] and report.silent_sending == []
    assert report.wrongly_quarantined == []
