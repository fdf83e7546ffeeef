"""mapping: a Jolt chain applied to the current data, built once per flow."""

from __future__ import annotations

import json
from typing import Any

from integrator.config.checks import Options
from integrator.config.yamlfile import decode_utf8
from integrator.errors import PermanentError
from integrator.mapping.jolt import JoltMapping, MappingSpecError
from integrator.pipeline.exchange import Exchange
from integrator.pipeline.stage import BuildContext, Stage

__all__ = ["MappingStage"]


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all different (json keeps the last one silently)."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


class MappingStage(Stage):
    """Transforms ``ex.data`` with a Jolt chain read from a JSON file (``spec``).

    The chain's context (``^path`` in modify operations) holds ``attributes`` (the order's,
    as text) and ``vars`` (the flow's constants, as written): ``"^vars.warehouse"``,
    ``"=concat(^vars.prefix, @(1,number))"``."""

    name = "mapping"
    allowed = {"spec"}

    def __init__(
        self, mapping: JoltMapping | None, spec_file: str, constants: dict[str, Any] | None = None
    ) -> None:
        self.mapping, self.spec_file = mapping, spec_file
        self.constants = constants or {}  # jolt-py copies what it takes from the context

    @classmethod
    def from_config(cls, opts: Options, ctx: BuildContext) -> Stage:
        """Load and build the chain; a bad spec names its file and operation index."""
        spec_path = opts.get("spec", str, "", required=True)
        if not spec_path:
            return cls(None, "")
        path = ctx.app.resolve_path(spec_path)
        try:
            text, problem = decode_utf8(path.read_bytes(), str(path))
            if text is None:
                assert problem is not None
                opts.error("spec", f"Jolt spec {problem}")
                return cls(None, str(path))
            spec = json.loads(text, object_pairs_hook=_unique_keys)
        except OSError as exc:
            opts.error("spec", f"cannot read Jolt spec {path}: {exc.strerror}")
            return cls(None, str(path))
        except json.JSONDecodeError as exc:
            opts.error("spec", f"Jolt spec {path} line {exc.lineno}: invalid JSON: {exc.msg}")
            return cls(None, str(path))
        except _DuplicateKey as exc:
            opts.error(
                "spec",
                f"Jolt spec {path}: duplicate key {exc.key!r} in one object; JSON would keep "
                "only the last one: remove or rename one of them",
            )
            return cls(None, str(path))
        except RecursionError:
            opts.error("spec", f"Jolt spec {path}: nested too deeply")
            return cls(None, str(path))
        try:
            mapping = JoltMapping(spec)
        except MappingSpecError as exc:
            opts.error("spec", f"Jolt spec {path}: {exc}")
            return cls(None, str(path))
        ctx.warnings.extend(f"{path}: {w} (yields no value at run time)" for w in mapping.warnings)
        return cls(mapping, str(path), ctx.flow.vars)

    def describe(self) -> dict[str, Any]:
        """The spec file."""
        return {"spec": self.spec_file}

    def process(self, ex: Exchange) -> None:
        """Apply the chain; a transform error fails the order."""
        assert self.mapping is not None  # from_config reported a bad spec
        try:
            context = {"attributes": dict(ex.attributes), "vars": self.constants}
            ex.data = self.mapping.apply(ex.data, context)
        except Exception as exc:  # noqa: BLE001 - jolt-py raises several types at apply time
            raise PermanentError(
                f"mapping {self.spec_file}: {type(exc).__name__}: {exc}", stage=self.name
            ) from None
