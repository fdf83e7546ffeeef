"""Checks of a whole flow once its stages are built: their order, from the capabilities the
stages declare (never from their names), the run-time ``${…}`` expressions of their options
(they compile, call known functions, name declared constants; ``${_order.…}`` paths against
the documents whose shape is known), and ``settle_seconds`` against the target's Timeout."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from integrator.config.model import AppConfig, FlowConfig, StageSpec
from integrator.config.yamlfile import YamlDoc, join_key
from integrator.connectors.auth.token_login import TokenLogin
from integrator.connectors.resolve import resolve_connector
from integrator.errors import ConfigIssue
from integrator.mapping.expr import check_expression, placeholders
from integrator.mapping.paths import simple_steps
from integrator.pipeline.stage import SourceStage, Stage

__all__ = ["check_flow", "golden_orders", "shape_has"]


def check_flow(
    app: AppConfig,
    flow: FlowConfig,
    built: list[tuple[StageSpec, Stage]],
    doc: YamlDoc,
    issues: list[ConfigIssue],
    warnings: list[str],
) -> None:
    """Every check of this module; problems go to ``issues``, doubts to ``warnings``."""
    _order_of_stages(built, doc, issues)
    _templates(app, flow, built, doc, issues)
    _settle(app, flow, built, doc, warnings)


def _per_order(stage: Stage) -> bool:
    """The stage does something with each order (it has a process or a plan step)."""
    cls = type(stage)
    return cls.process is not Stage.process or cls.plan is not Stage.plan


def _order_of_stages(
    built: list[tuple[StageSpec, Stage]], doc: YamlDoc, issues: list[ConfigIssue]
) -> None:
    sources = [i for i, (_s, st) in enumerate(built) if isinstance(st, SourceStage)]
    if len(sources) == 1:
        first = sources[0]
        source = built[first][0]
        for spec, stage in built[:first]:
            if _per_order(stage):
                issues.append(
                    doc.issue(
                        spec.key,
                        f"stage {spec.name!r} comes before the source stage {source.name!r} "
                        f"({source.key}): orders exist only once the source has read them. "
                        f"Move it after {source.name!r}; only stages that work once per run "
                        "(login) may come first",
                    )
                )
    for i, (spec, stage) in enumerate(built):
        if not stage.marks:
            continue
        later_writes = [s for s, st in built[i + 1 :] if st.writes]
        delivered = [s for s, st in built[:i] if st.delivers]
        if later_writes:
            issues.append(
                doc.issue(
                    spec.key,
                    f"stage {spec.name!r} marks the order in the source before "
                    f"{later_writes[0].name!r} ({later_writes[0].key}) writes it: an order whose "
                    "write fails would be marked sent. Move the mark after the write",
                )
            )
        elif not delivered:
            issues.append(
                doc.issue(
                    spec.key,
                    f"stage {spec.name!r} marks the order in the source, but no stage before it "
                    "delivers the order (write or export): orders would be marked sent that "
                    "were never written. Add the write (or export) before it",
                )
            )


def _strings(node: Any, key: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, join_key(key, str(k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _strings(v, join_key(key, i))
    elif isinstance(node, str) and "${" in node:
        yield key, node


def golden_orders(flows_dir: Path, flow: str) -> list[tuple[str, Any]]:
    """The recorded orders of ``flow``'s golden cases, by file (unreadable ones left out:
    ``test-flow`` reports them)."""
    out = []
    for path in sorted((flows_dir / "tests" / flow).glob("*.order.json")):
        try:
            out.append((str(path), json.loads(path.read_bytes())))
        except (OSError, ValueError, RecursionError):
            continue
    return out


def shape_has(steps: tuple[str | int, ...], doc: Any) -> bool:
    """True when ``doc`` has the path of ``steps``, or cannot tell: a null, an empty mapping
    (free-form, as ``extra_field``) or an empty list on the way. An index takes any element
    of the list: which index exists is data, not shape."""
    for i, step in enumerate(steps):
        if doc is None:
            return True
        if isinstance(step, str):
            if not isinstance(doc, dict):
                return False
            if not doc:
                return True
            if step not in doc:
                return False
            doc = doc[step]
        else:
            if not isinstance(doc, list):
                return False
            rest = steps[i + 1 :]
            return not doc or any(shape_has(rest, item) for item in doc)
    return True


def _templates(
    app: AppConfig,
    flow: FlowConfig,
    built: list[tuple[StageSpec, Stage]],
    doc: YamlDoc,
    issues: list[ConfigIssue],
) -> None:
    """Each ``${_order.PATH}`` compiles, and, where the order's shape is known, some known
    document has PATH (absent from all of them, it would fail every order at run time)."""
    samples: list[Any] = []
    for _spec, stage in built:
        if isinstance(stage, SourceStage):
            samples += stage.samples()
    golden = golden_orders(app.flows_dir, flow.name)
    samples += [d for _f, d in golden]
    known = []
    if any(isinstance(st, SourceStage) and st.samples() for _s, st in built):
        known.append("the source's reference shape")
    if golden:
        known.append(f"{len(golden)} golden case(s) in {Path(golden[0][0]).parent}")
    target = resolve_connector(app.connectors, flow.target)
    login = target is not None and isinstance(target.auth, TokenLogin)
    for spec, _stage in built:
        for key, text in _strings(spec.options, spec.key):
            for ph in placeholders(text):
                problem = check_expression(ph.text, known_vars=flow.vars, login=login)
                if problem is not None:
                    issues.append(doc.issue(key, f"${{{ph.text}}}: {problem}"))
                    continue
                path = ph.order_path
                if path is None:
                    continue
                try:
                    steps = simple_steps(path)
                except ValueError as exc:
                    issues.append(doc.issue(key, f"${{{ph.text}}}: {exc}"))
                    continue
                if steps is None or not samples or ph.default is not None:
                    continue
                if not any(shape_has(steps, s) for s in samples):
                    issues.append(
                        doc.issue(
                            key,
                            f"${{{ph.text}}}: the order has no {path!r} (checked against "
                            f"{' and '.join(known)}), so every order would fail here. Fix the "
                            f"path; if your orders do have it, add a golden case with it "
                            f"(flows/tests/{flow.name}/<case>.order.json); if it may be "
                            f"missing, give a default: ${{{ph.expr}:-}}",
                        )
                    )


def _settle(
    app: AppConfig,
    flow: FlowConfig,
    built: list[tuple[StageSpec, Stage]],
    doc: YamlDoc,
    warnings: list[str],
) -> None:
    """A write that may have landed is settled after ``settle_seconds``; shorter than the
    target's Timeout, the request may still be on its way when the order is asked for."""
    if flow.settle_seconds is None or not any(st.writes for _s, st in built):
        return
    target = resolve_connector(app.connectors, flow.target)
    if target is None or flow.settle_seconds >= target.timeout:
        return
    line = doc.line("settle_seconds")
    warnings.append(
        f"{flow.file}{f':{line}' if line else ''} [settle_seconds]: {flow.settle_seconds:g} s is "
        f"shorter than the Timeout of the target connector {target.name!r} "
        f"({target.timeout:g} s): a write cut short may still land after its order was "
        f"settled as not written, and be written again. Use at least {target.timeout:g}"
    )
