"""check_response: turn the ERP's answer into mapping data for mark_sent.

Mapping data: ``{"order": {"erp_order_id": ...}, "order_items": [{"pk": ..., "extra_field":
{...}}]}``. The built-in reads the ERP id and order lines by JMESPath; a user script
``check_response(request, response, attributes)`` can replace it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from integrator.config.checks import Options
from integrator.errors import PermanentError
from integrator.mapping.paths import select
from integrator.pipeline.exchange import Exchange
from integrator.pipeline.stage import BuildContext, Stage
from integrator.scripting.native import Script, as_mapping_data, load_script
from integrator.scripting.pool import DEFAULT_TIMEOUT

if TYPE_CHECKING:
    from integrator.pipeline.context import RunContext

__all__ = ["CheckResponseStage", "default_mapping_data", "placeholder_mapping_data"]

DEFAULTS = {
    "reference_path": "id || results[0].id",
    "lines_path": "lines || results[0].lines",
    "line_pk_path": "external_id",
    "line_ref_path": "line_id",
    "order_ref_key": "erp_order_id",
    "line_ref_key": "erp_line_id",
}


def default_mapping_data(
    response: Any, o: dict[str, str], reference: str | None = None
) -> dict[str, Any]:
    """The built-in: the ERP's order id, and per line the ERP line id keyed by Omnitron pk.
    ``reference``: the id an answer rule's ``id_path`` already read (attribute ``erp.id``),
    used unless ``reference_path`` is set."""
    ref = reference if reference is not None else select(o["reference_path"], response)
    if ref in (None, ""):
        raise PermanentError(
            f"check_response: no ERP reference at {o['reference_path']!r} in the "
            "ERP answer; set check_response.reference_path or use a script"
        )
    items = []
    for line in select(o["lines_path"], response) or []:
        pk, line_ref = select(o["line_pk_path"], line), select(o["line_ref_path"], line)
        if pk is not None and line_ref is not None:
            items.append({"pk": pk, "extra_field": {o["line_ref_key"]: line_ref}})
    return {"order": {o["order_ref_key"]: ref}, "order_items": items}


def placeholder_mapping_data(order: dict[str, Any], o: dict[str, str] | None) -> dict[str, Any]:
    """What a dry run shows for the mapping data: the shape the built-in (options ``o``) or a
    script (``o`` None) gives, with a placeholder for every value only the ERP's answer holds;
    one entry per item of the order (the ERP's lines name them)."""
    pks = [
        item["pk"]
        for item in order.get("orderitem_set") or []
        if isinstance(item, dict) and "pk" in item
    ]
    if o is None:
        value = "<from the ERP's answer: what check_response's script returns>"
        return {"order_items": [{"pk": pk, "extra_field": value} for pk in pks]}
    items = [
        {
            "pk": pk,
            "extra_field": {
                o["line_ref_key"]: f"<from the ERP's answer: {o['line_ref_path']} of its line "
                f"whose {o['line_pk_path']} is {pk}>"
            },
        }
        for pk in pks
    ]
    ref = f"<from the ERP's answer: {o['reference_path']}>"
    return {"order": {o["order_ref_key"]: ref}, "order_items": items}


class CheckResponseStage(Stage):
    """Built-in or scripted; a failure after the write keeps the order `sent` (never rewritten)."""

    name = "check_response"
    allowed = {"script", "timeout", *DEFAULTS}

    def __init__(
        self, script: Script | None, options: dict[str, str], explicit_ref: bool = False
    ) -> None:
        self.script, self.options = script, options
        # reference_path written in the flow wins over the write's answer rule (``id_path``)
        self.explicit_ref = explicit_ref
        self.run: RunContext | None = None

    def open(self, run: RunContext) -> None:
        """Keep the run: its script pool runs the calls."""
        self.run = run

    @classmethod
    def from_config(cls, opts: Options, ctx: BuildContext) -> Stage:
        """A script, or the built-in's paths."""
        script = None
        path = opts.get("script", str, "")
        timeout = opts.get(
            "timeout",
            float,
            DEFAULT_TIMEOUT,
            check=lambda v: None if v > 0 else "expected seconds > 0",
        )
        if path:
            script, issues = load_script(
                ctx.app.resolve_path(path),
                "check_response",
                opts.doc.file,
                opts.sub("script"),
                timeout,
            )
            opts.issues.extend(issues)
        return cls(
            script,
            {k: opts.get(k, str, v) for k, v in DEFAULTS.items()},
            explicit_ref="reference_path" in opts.data,
        )

    def describe(self) -> dict[str, Any]:
        """The script and its runtime, or the built-in."""
        if self.script is None:
            return {"script": None}
        return {"script": str(self.script.path), "runtime": self.script.runtime}

    def plan(self, ex: Exchange) -> None:
        """Dry run (the ERP was not asked): mapping data of the right shape, placeholders for
        the ERP's values, so mark_sent shows every PATCH it would send."""
        opts = self.options if self.script is None else None
        ex.mapping_data = placeholder_mapping_data(ex.order, opts)

    def process(self, ex: Exchange) -> None:
        """Set ``ex.mapping_data``."""
        if self.script is None:
            found = None if self.explicit_ref else ex.attributes.get("erp.id")
            data = default_mapping_data(ex.response, self.options, found)
        else:
            assert self.run is not None  # open()
            result, raw = self.script.run(
                self.run.scripts,
                ex.attributes,
                request=ex.request,
                response=ex.response,
                order=ex.order,
            )
            if raw is not None:
                raise PermanentError(
                    f"{self.script.path.name} wrote output that is not JSON: {raw[:80]!r}"
                )
            data = dict(as_mapping_data(result))
        ex.mapping_data = data
        ref = (data.get("order") or {}).get(self.options["order_ref_key"])
        if ref is not None:
            ex.attributes["erp.reference"] = str(ref)
