"""The Omnium flow's helpers: its name, a project of ``flows/omnium``, and its checks. The
fixtures ``servers`` (the Omnium-like and ERP sandboxes) and ``omnium_project`` are in
``conftest.py``."""

from __future__ import annotations

import shutil
from pathlib import Path

from integrator.sandbox import SANDBOX_ENV, ErpSandbox, OmniumSandbox
from support import ROOT, Project, stats

FLOW = "omnium_order_flow"


def make_omnium_project(tmp_path: Path, omnium: OmniumSandbox, erp: ErpSandbox) -> Project:
    """Copy ``flows/omnium`` (its own config.yaml, flows and scripts) into ``tmp_path``, wired
    to the two sandboxes."""
    shutil.copytree(ROOT / "flows" / "omnium", tmp_path, dirs_exist_ok=True)
    return Project(tmp_path, {**SANDBOX_ENV, "OMNIUM_URL": omnium.url, "ERP_URL": erp.url})


def new_numbers(omnium: OmniumSandbox) -> list[str]:
    """Numbers of the orders in status New, sorted."""
    return sorted(o["OrderNumber"] for o in omnium.orders.values() if o["Status"] == "New")


def assert_once(erp: ErpSandbox, numbers: list[str]) -> None:
    """Exactly ``numbers`` in the ERP, each once."""
    assert sorted(erp.received) == sorted(numbers)
    assert all(c == 1 for c in erp.received.values()), stats(erp.url)["duplicate_numbers"]
