"""script and post_script: user Python per order (native API)."""

from __future__ import annotations

from typing import Any

from integrator.config.checks import Options
from integrator.errors import PermanentError
from integrator.pipeline.exchange import Exchange
from integrator.pipeline.stage import BuildContext, Stage
from integrator.scripting.native import Script, load_script

__all__ = ["PostScriptStage", "ScriptStage"]


def _load(opts: Options, ctx: BuildContext, entry: str, key: str = "path") -> Script | None:
    path = opts.get(key, str, "", required=True)
    if not path:
        return None
    script, issues = load_script(ctx.app.resolve_path(path), entry, opts.doc.file, opts.sub(key))
    opts.issues.extend(issues)
    return script


class ScriptStage(Stage):
    """``process(data, attributes)`` returns the new data; an exception fails the order."""

    name = "script"
    allowed = {"path"}

    def __init__(self, script: Script | None) -> None:
        self.script = script

    @classmethod
    def from_config(cls, opts: Options, ctx: BuildContext) -> Stage:
        """Load the script and check its signature."""
        return cls(_load(opts, ctx, "process"))

    def describe(self) -> dict[str, Any]:
        """The script and its runtime."""
        return {"script": str(self.script.path) if self.script else None, "runtime": "native"}

    def process(self, ex: Exchange) -> None:
        """Run the script on the current data."""
        assert self.script is not None  # from_config reported a missing script
        result = self.script.call(ex.attributes, data=ex.data, order=ex.order)
        ex.normalize_attributes()
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
    allowed = {"path", "run_on_failure"}
    side_effects = True

    @classmethod
    def from_config(cls, opts: Options, ctx: BuildContext) -> Stage:
        """Load the script; read run_on_failure."""
        stage = cls(_load(opts, ctx, "process"))
        stage.run_on_failure = opts.get("run_on_failure", bool, False)
        return stage

    def process(self, ex: Exchange) -> None:
        """Run the script; only its attributes count."""
        assert self.script is not None  # from_config reported a missing script
        self.script.call(ex.attributes, data=ex.data, order=ex.order)
        ex.normalize_attributes()
