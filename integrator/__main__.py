"""``python -m integrator``: the same as the ``integrator`` command."""

from __future__ import annotations

from integrator.cli.main import main

main()
