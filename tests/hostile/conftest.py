"""The hostile suite's fixture; its cases and checks are in ``support.hostile``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support import make_project, unsent
from support.hostile import Hostile, prepare
from support.proxy import HostileProxy

from integrator.sandbox import running_sandbox


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[Hostile]:
    """The sandbox, the proxies, and the project aimed at them."""
    with running_sandbox(8) as sb:
        omni = HostileProxy(sb.omnitron.url).start()
        erp = HostileProxy(sb.erp.url).start()
        try:
            env = {**sb.env(), "OMNITRON_URL": omni.url, "ERP_URL": erp.url}
            project = make_project(tmp_path, env)
            prepare(project.root)
            numbers = unsent(sb)
            assert len(numbers) >= 3
            yield Hostile(sb, omni, erp, project, numbers)
        finally:
            omni.stop()
            erp.stop()
