"""check_response: turn the ERP's answer into mapping data for mark_sent.

Mapping data: ``{"order": {"erp_order_id": ...}, "order_items": [{"pk": ..., "extra_field":
{...}}]}``. The built-in reads the ERP id and order lines by JMESPath; a user script
``check_response(request, response, attributes)`` can replace it.
"""

from __future__ import annotations

from typing import Any

from integrator.config.checks import Options
from integrator.errors import PermanentError
from integrator.mapping.paths import select
from integrator.pipeline.exchange import Exchange
from integrator.pipeline.stage import BuildContext, Stage
from integrator.scripting.native import Script, as_mapping_data, load_script

__all__ = ["CheckResponseStage", "default_mapping_data"]

DEFAULTS = {
    "reference_path": "id || results[0].id",
    "lines_path": "lines || results[0].lines",
    "line_pk_path": "external_id",
    "line_ref_path": "line_id",
    "order_ref_key": "erp_order_id",
    "line_ref_key": "erp_line_id",
}


def default_mapping_data(response: Any, o: dict[str, str]) -> dict[str, Any]:
    """The built-in: the ERP's order id, and per line the ERP line id keyed by Omnitron pk."""
    ref = select(o["reference_path"], response)
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


class CheckResponseStage(Stage):
    """Built-in or scripted; a failure after the write keeps the order `sent` (never rewritten)."""

    name = "check_response"
    allowed = {"script", *DEFAULTS}
    side_effects = True  # needs the ERP's real answer: nothing to show in a dry run

    def __init__(self, script: Script | None, options: dict[str, str]) -> None:
        self.script, self.options = script, options

    @classmethod
    def from_config(cls, opts: Options, ctx: BuildContext) -> Stage:
        """A script, or the built-in's paths."""
        script = None
        path = opts.get("script", str, "")
        if path:
            script, issues = load_script(
                ctx.app.resolve_path(path), "check_response", opts.doc.file, opts.sub("script")
            )
            opts.issues.extend(issues)
        return cls(script, {k: opts.get(k, str, v) for k, v in DEFAULTS.items()})

    def process(self, ex: Exchange) -> None:
        """Set ``ex.mapping_data``."""
        if self.script is None:
            data = default_mapping_data(ex.response, self.options)
        else:
            data = dict(
                as_mapping_data(
                    self.script.call(
                        ex.attributes, request=ex.request, response=ex.response, order=ex.order
                    )
                )
            )
            ex.normalize_attributes()
        ex.mapping_data = data
        ref = (data.get("order") or {}).get(self.options["order_ref_key"])
        if ref is not None:
            ex.attributes["erp.reference"] = str(ref)
