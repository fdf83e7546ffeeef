"""login: token login on the source (and on the target when it has a TokenLogin)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from integrator.pipeline.stage import Stage

if TYPE_CHECKING:
    from integrator.pipeline.context import RunContext

__all__ = ["LoginStage"]


class LoginStage(Stage):
    """Logs in once per run; FatalError (the run stops) when a login is refused."""

    name = "login"
    calls_out = True

    def begin(self, run: RunContext) -> None:
        """Log in the connectors that have a token login."""
        run.source.login()
        if run.target is not run.source:
            run.target.login()
