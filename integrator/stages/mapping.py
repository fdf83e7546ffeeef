"""mapping: a Jolt chain applied to the current data, built once per flow."""

from __future__ import annotations

import json
from typing import Any

from integrator.config.checks import Options
from integrator.errors import PermanentError
from integrator.mapping.jolt import JoltMapping, MappingSpecError
from integrator.pipeline.exchange import Exchange
from integrator.pipeline.stage import BuildContext, Stage

__all__ = ["MappingStage"]


class MappingStage(Stage):
    """Transforms ``ex.data`` with a Jolt chain read from a JSON file (``spec``)."""

    name = "mapping"
    allowed = {"spec"}

    def __init__(self, mapping: JoltMapping | None, spec_file: str) -> None:
        self.mapping, self.spec_file = mapping, spec_file

    @classmethod
    def from_config(cls, opts: Options, ctx: BuildContext) -> Stage:
        """Load and build the chain; a bad spec names its file and operation index."""
        spec_path = opts.get("spec", str, "", required=True)
        if not spec_path:
            return cls(None, "")
        path = ctx.app.resolve_path(spec_path)
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            opts.error("spec", f"cannot read Jolt spec {path}: {exc.strerror}")
            return cls(None, str(path))
        except json.JSONDecodeError as exc:
            opts.error("spec", f"Jolt spec {path} line {exc.lineno}: invalid JSON: {exc.msg}")
            return cls(None, str(path))
        try:
            mapping = JoltMapping(spec)
        except MappingSpecError as exc:
            opts.error("spec", f"Jolt spec {path}: {exc}")
            return cls(None, str(path))
        ctx.warnings.extend(f"{path}: {w} (yields no value at run time)" for w in mapping.warnings)
        return cls(mapping, str(path))

    def describe(self) -> dict[str, Any]:
        """The spec file."""
        return {"spec": self.spec_file}

    def process(self, ex: Exchange) -> None:
        """Apply the chain; a transform error fails the order."""
        assert self.mapping is not None  # from_config reported a bad spec
        try:
            ex.data = self.mapping.apply(ex.data, {"attributes": dict(ex.attributes)})
        except Exception as exc:  # noqa: BLE001 - jolt-py raises several types at apply time
            raise PermanentError(
                f"mapping {self.spec_file}: {type(exc).__name__}: {exc}", stage=self.name
            ) from None
