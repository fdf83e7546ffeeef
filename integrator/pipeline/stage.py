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
    ``open``/``close`` bracket a run; ``process`` handles one exchange in place and raises an
    :class:`~integrator.errors.OrderError` to fail that order.
    """

    name: ClassVar[str] = ""
    allowed: ClassVar[set[str]] = set()
    writes: ClassVar[bool] = False  # the stage that writes to the ERP (resume point)
    side_effects: ClassVar[bool] = False  # a dry run calls plan() instead of process()
    run_on_failure: bool = False

    @classmethod
    def from_config(cls, opts: Options, ctx: BuildContext) -> Stage:
        """Build the stage from its options; the default takes none."""
        return cls()

    def open(self, run: RunContext) -> None:
        """Called once when a run starts."""

    def process(self, ex: Exchange) -> None:
        """Handle one order; the default passes it on unchanged."""

    def plan(self, ex: Exchange) -> None:
        """Dry run of a stage with side effects: record what it would send, send nothing."""

    def close(self) -> None:
        """Called once when a run ends."""

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

    def iter_orders(self, run: RunContext) -> Iterator[OrderRef]:
        """Yield the orders to process, page by page."""
        raise NotImplementedError

    def fetch(self, ref: OrderRef) -> Exchange:
        """Fetch one order's document; runs in a worker thread."""
        raise NotImplementedError
