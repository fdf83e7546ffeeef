"""script and post_script: user Python per order (native or compat runtime, in worker processes)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from integrator.config.checks import Options
from integrator.errors import PermanentError
from integrator.pipeline.exchange import Exchange
from integrator.pipeline.stage import BuildContext, Stage
from integrator.scripting.native import Script, load_script
from integrator.scripting.pool import DEFAULT_TIMEOUT

if TYPE_CHECKING:
    from integrator.pipeline.context import RunContext

__all__ = ["PostScriptStage", "ScriptStage"]


def _load(opts: Options, ctx: BuildContext, entry: str, key: str = "path") -> Script | None:
    path = opts.get(key, str, "", required=True)
    timeout = opts.get(
        "timeout", float, DEFAULT_TIMEOUT, check=lambda v: None if v > 0 else "expected seconds > 0"
    )
    if not path:
        return None
    script, issues = load_script(
        ctx.app.resolve_path(path), entry, opts.doc.file, opts.sub(key), timeout
    )
    opts.issues.extend(issues)
    return script


def _not_json(script: Script, raw: str) -> PermanentError:
    return PermanentError(
        f"{script.path.name} wrote output that is not JSON: {raw[:80]!r}", stage="script"
    )


class ScriptStage(Stage):
    """``process(data, attributes)`` returns the new data; an exception fails the order."""

    name = "script"
    allowed = {"path", "timeout"}

    def __init__(self, script: Script | None) -> None:
        self.script = script
        self.run: RunContext | None = None

    def open(self, run: RunContext) -> None:
        """Keep the run: its script pool runs the calls."""
        self.run = run

    @classmethod
    def from_config(cls, opts: Options, ctx: BuildContext) -> Stage:
        """Load the script and check its signature."""
        return cls(_load(opts, ctx, "process"))

    def describe(self) -> dict[str, Any]:
        """The script and its runtime."""
        return {
            "script": str(self.script.path) if self.script else None,
            "runtime": self.script.runtime if self.script else None,
        }

    def process(self, ex: Exchange) -> None:
        """Run the script on the current data."""
        assert self.script is not None and self.run is not None  # from_config, open
        result, raw = self.script.run(self.run.scripts, ex.attributes, data=ex.data, order=ex.order)
        if raw is not None:
            raise _not_json(self.script, raw)
        if result is None:
            raise PermanentError(
                f"{self.script.path.name}: process() returned None; return the "
                "new data (or the data unchanged)",
                stage=self.name,
            )
        ex.data = result


class PostScriptStage(ScriptStage):
    """After mark_sent, or after a failure when ``run_on_failure``; its result is ignored."""

    name = "post_script"
    allowed = {"path", "run_on_failure", "timeout"}
    side_effects = True

    @classmethod
    def from_config(cls, opts: Options, ctx: BuildContext) -> Stage:
        """Load the script; read run_on_failure."""
        stage = cls(_load(opts, ctx, "process"))
        stage.run_on_failure = opts.get("run_on_failure", bool, False)
        return stage

    def process(self, ex: Exchange) -> None:
        """Run the script; only its attributes count."""
        assert self.script is not None and self.run is not None  # from_config, open
        self.script.run(self.run.scripts, ex.attributes, data=ex.data, order=ex.order)
