"""The stage contract: built once per flow from its options, called once per exchange."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from integrator.config.checks import Options
from integrator.config.model import AppConfig, FlowConfig
from integrator.pipeline.exchange import Exchange

if TYPE_CHECKING:
    from integrator.pipeline.context import RunContext

__all__ = ["BuildContext", "OrderRef", "SourceStage", "Stage"]


@dataclass
class BuildContext:
    """What a stage may look at while it checks its options."""

    app: AppConfig
    flow: FlowConfig
    warnings: list[str] = field(default_factory=list)


class Stage:
    """Base of every stage. Subclasses set ``name`` and ``allowed``, override what they need.

    ``from_config`` reads and checks the options (problems go to ``opts.issues``, never raised);
    ``open``/``close`` bracket a run and never call out; ``begin`` is called once after every
    stage is open, only when the run may call out (never in trace mode); ``process`` handles
    one exchange in place and raises an :class:`~integrator.errors.OrderError` to fail that
    order.

    Capabilities, which the engine reads instead of names:

    ==========================  ==============================================================
    ``calls_out``               talks to a connector: trace mode calls ``plan()`` instead
    ``side_effects``            changes something outside: dry runs and trace call ``plan()``
    ``writes``                  the write to the target: the ledger's resume point
    ``delivers``                delivers the order (the write, an export): a mark needs one
    ``settles_ambiguous_write`` asks the target whether it has the order (query_check)
    ``marks``                   marks the order in the source; ``is_marked`` asks it again
    ==========================  ==============================================================
    """

    name: ClassVar[str] = ""
    allowed: ClassVar[set[str]] = set()
    calls_out: ClassVar[bool] = False
    side_effects: ClassVar[bool] = False
    writes: ClassVar[bool] = False
    delivers: ClassVar[bool] = False
    settles_ambiguous_write: ClassVar[bool] = False
    marks: ClassVar[bool] = False
    repeatable: bool = False  # a write whose repeat is harmless (idempotency key, a state PUT)
    run_on_failure: bool = False

    @classmethod
    def from_config(cls, opts: Options, ctx: BuildContext) -> Stage:
        """Build the stage from its options; the default takes none."""
        return cls()

    def open(self, run: RunContext) -> None:
        """Called once when a run starts; calls nothing outside."""

    def begin(self, run: RunContext) -> None:
        """Called once before the first order, when the run may call out (a login)."""

    def process(self, ex: Exchange) -> None:
        """Handle one order; the default passes it on unchanged."""

    def plan(self, ex: Exchange) -> None:
        """Dry run or trace: record what the stage would send, send nothing."""

    def is_marked(self, run: RunContext, pk: str, number: str) -> bool | None:
        """A ``marks`` stage: does the source show the order as marked now (None: cannot
        tell)? Asked for rows a crash left at ``sent``/``marked``."""
        return None

    def close(self) -> None:
        """Called once when a run ends."""

    def accept(self, ex: Exchange, answer: Any, status: int) -> None:
        """A ``writes`` stage: take the target's answer to the write (trace mode hands it a
        recorded one)."""
        raise NotImplementedError(f"stage {self.name!r} does not write")

    def resumed(self, ex: Exchange) -> None:
        """A ``writes`` stage: ``ex`` resumes after its write with the answer the ledger
        stored; read from it what the stage reads from a fresh answer."""

    def describe(self) -> dict[str, Any]:
        """What ``integrator validate`` shows about this stage."""
        return {}


@dataclass(frozen=True)
class OrderRef:
    """One order as the source lists it, before its details are fetched."""

    pk: str
    number: str
    summary: dict[str, Any]


class SourceStage(Stage):
    """A stage that lists orders and fetches each one's full document."""

    calls_out = True

    def iter_orders(self, run: RunContext, only: str | None = None) -> Iterator[OrderRef]:
        """Yield the orders to process, page by page; ``only`` (or ``run.only_order``): that
        order alone, when the source lists it."""
        raise NotImplementedError

    def fetch(self, ref: OrderRef) -> Exchange:
        """Fetch one order's document; runs in a worker thread."""
        raise NotImplementedError

    def lookup(self, run: RunContext, number: str) -> OrderRef | None:
        """Order ``number`` for ``integrator orders export`` (None: the source has none). The
        default asks the listing for it, so it finds what a run would take; a source that can
        find any order, whatever its state, overrides it."""
        listed = self.iter_orders(run, only=number)
        try:
            return next(iter(listed), None)
        finally:
            close = getattr(listed, "close", None)
            if close is not None:
                close()

    def samples(self) -> list[Any]:
        """Documents of the shape ``fetch`` builds, known without a call (the source's
        reference shapes). ``integrator validate`` checks ``${_order.…}`` templates against
        them and the flow's golden cases: a path that none of them has is an error. Empty:
        the shape is unknown (only golden cases count)."""
        return []

    def recorded(self, run: RunContext, doc: dict[str, Any]) -> Exchange:
        """The exchange for a recorded document (trace mode, golden tests), as ``fetch`` would
        have built it, without a call."""
        pk, number = str(doc.get("pk", doc.get("id", ""))), str(doc.get("number", ""))
        return Exchange(
            pk,
            number,
            doc,
            attributes={
                "order.number": number,
                "order.pk": pk,
                "flow.name": run.flow.name,
                "run.id": str(run.run_id),
            },
        )
