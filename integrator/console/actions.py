"""The console's actions: release, replay, resolve and run now, for a named user.

The decisions are ``integrator.pipeline.recovery``'s (the CLI's too); this module only reads
what the console's source gives and answers JSON-ready values. No web framework here.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from integrator.pipeline.recovery import ActionRefused

if TYPE_CHECKING:
    from integrator.console.app import ConsoleSource

__all__ = ["ACTIONS", "ActionRefused", "Actions", "NeedsDaemon"]

ACTIONS = ("release", "replay", "resolve", "run")
REPLAY_GRACE = 30.0


class NeedsDaemon(ActionRefused):
    """An action only the daemon takes, refused by a standalone console; ``url``: the console
    of the daemon that runs over the same store, when one does."""

    def __init__(self, message: str, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


class Actions:
    def __init__(self, source: ConsoleSource) -> None:
        self.source = source

    def _project(self) -> Any:
        if self.source.project is None:
            raise ActionRefused("this console has no project to act with")
        return self.source.project()

    def release(self, who: str, flow: str, reason: str | None, note: str | None) -> dict[str, Any]:
        from integrator.pipeline import recovery

        done = recovery.release(self._project(), self.source.store(), flow, reason, note, who)
        return {
            "action": "release",
            "flow": flow,
            "by": who,
            "released": done.released,
            "kept": done.kept,
            "message": f"{len(done.released)} order(s) of {flow} released; the next run "
            "takes them"
            + (
                f"; left quarantined (check the ERP, then resolve): {', '.join(done.kept)}"
                if done.kept
                else ""
            ),
        }

    def resolve(
        self, who: str, number: str, flow: str | None, how: str, erp_ref: str | None
    ) -> dict[str, Any]:
        from integrator.pipeline import recovery

        if how not in ("sent", "resend"):
            raise ValueError("as takes sent (the ERP has it) or resend (write it again)")
        if how == "sent" and not erp_ref:
            raise ValueError(
                "resolving as sent needs the ERP's id of the order (erp_ref): check_response "
                "and mark_sent read it"
            )
        if how == "resend" and erp_ref:
            raise ValueError("erp_ref goes with as=sent")
        name = recovery.resolve(
            self._project(),
            self.source.store(),
            number,
            flow,
            as_sent=how == "sent",
            response={"id": erp_ref} if how == "sent" else None,
            erp_ref=erp_ref,
            who=who,
        )
        return {
            "action": "resolve",
            "flow": name,
            "number": number,
            "by": who,
            "message": f"order {number} of {name}: "
            + (
                "sent; the next run marks it"
                if how == "sent"
                else "will be written on the next run"
            ),
        }

    def replay(self, who: str, number: str, flow: str | None, force: bool) -> dict[str, Any]:
        from integrator.pipeline import recovery, run_flow

        if self.source.runnable is None:
            raise ActionRefused("this console cannot run flows")
        project = self.source.runnable()
        name = recovery.prepare_replay(
            project, self.source.store(), number, flow, force, who, "replay with force"
        )
        from integrator.state.locks import FlowBusy

        try:
            result, run = run_flow(
                project,
                name,
                only_order=number,
                replay=True,
                replay_by=who,
                stop=threading.Event(),
                grace=REPLAY_GRACE,
            )
        except FlowBusy:
            raise ActionRefused(
                f"flow {name!r} is running now: try again when the run ends"
            ) from None
        listed = result.ok + result.failed > 0
        return {
            "action": "replay",
            "flow": name,
            "number": number,
            "by": who,
            "run": run.run_id,
            "status": result.status,
            "ok": result.ok,
            "failed": result.failed,
            "message": (
                f"order {number} replayed in run {run.run_id}: {result.status}"
                if listed
                else f"order {number} was not listed by the source (already marked sent, "
                "or filtered)"
            ),
        }

    def run(self, who: str, flow: str) -> dict[str, Any]:
        if self.source.run_now is None:
            from integrator.console.reach import reach

            found = reach(self.source)
            if found is not None:
                raise NeedsDaemon(
                    f"this standalone console only reads the store: {found.note()}", found.url
                )
            raise NeedsDaemon(
                "running a flow now needs the daemon (integrator daemon serves this console "
                "too): this standalone console only reads the store, and no daemon runs over "
                "it now"
            )
        return {
            "action": "run",
            "flow": flow,
            "by": who,
            "message": self.source.run_now(flow),
        }
