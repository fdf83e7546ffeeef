"""What the list-based sources share (Omnium, ERP change feeds, stock snapshots): the rule for
moving a delta watermark, the unit built from a listed row, and YAML times as option text."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from integrator.config.checks import Options
from integrator.connectors.bodies import parse_json
from integrator.errors import FatalError, OrderError
from integrator.pipeline.exchange import Exchange
from integrator.pipeline.stage import OrderRef

if TYPE_CHECKING:
    from integrator.connectors.http import Connector
    from integrator.pipeline.context import RunContext

__all__ = [
    "MAX_PAGES",
    "Listed",
    "advance_watermark",
    "linked_pages",
    "parse_time",
    "row_exchange",
    "time_check",
    "yaml_time",
]

MAX_PAGES = 100_000  # a guard against a list endpoint that never ends

# What a run listed: (the instant, the journal number, the time as the source wrote it)
Listed = tuple[dt.datetime, str, str]


def advance_watermark(
    run: RunContext,
    listed: list[Listed],
    parse: Callable[[str], dt.datetime],
    *,
    whole_instants: bool,
    what: str,
) -> None:
    """Move the flow's watermark past the longest run of done entries, in time order.

    ``whole_instants``: the source reads "strictly after" the watermark, so an instant is
    passed only when every entry of it is done; otherwise ("from", inclusive) the watermark may
    stop on the instant of the last done entry, which the next run reads again. Nothing moves
    in a dry run; a run of one order lists nothing here. ``what`` names the parameter in the
    event.
    """
    if run.dry_run or not listed:
        return
    run.flush()  # deferred `done`s count
    states = run.states([n for _, n, _ in listed])
    mark: tuple[dt.datetime, str] | None = None
    if whole_instants:
        instants: dict[dt.datetime, tuple[str, bool]] = {}
        for when, number, text in sorted(listed):
            done = states.get(number) == "done"
            earlier = instants.get(when)
            instants[when] = (text, done and (earlier[1] if earlier else True))
        for when in sorted(instants):
            text, all_done = instants[when]
            if not all_done:
                break
            mark = (when, text)
    else:
        for when, number, text in sorted(listed):
            if states.get(number) != "done":
                break
            mark = (when, text)
    old = run.watermark()
    if mark is not None and (old is None or mark[0] > parse(old)):
        run.set_watermark(mark[1])
        run.event(None, "watermark", f"{what} moves to {mark[1]}")


def linked_pages(
    conn: Connector,
    path: str,
    params: dict[str, Any] | None,
    what: str,
    *,
    page_size: int | None = None,
) -> Iterator[list[Any]]:
    """The pages of a list endpoint that answers ``{"results": [...], "next": url}`` (or a bare
    list), following ``next``. Without a ``next``, a full page of ``page_size`` rows asks for the
    next one by ``offset``. A failed call or an answer that is no list is a FatalError starting
    with ``what``."""
    first = dict(params or {})
    offset = 0
    url: str | None = path
    # the pages read (the first as its URL with its query): a next link seen again is a loop
    visited = {conn.url(path) + (f"?{urlencode(first, doseq=True)}" if first else "")}
    for _ in range(MAX_PAGES):
        if not url:
            return
        try:
            data = parse_json(conn.request("GET", url, params=params), f"{conn.name} {path}")
        except OrderError as exc:
            raise FatalError(f"{what}: {exc}") from None
        rows = data.get("results") if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise FatalError(f"{what}: {conn.name} {path}: expected a list")
        yield rows
        nxt = data.get("next") if isinstance(data, dict) else None
        if nxt:
            if conn.url(str(nxt)) in visited:
                raise FatalError(
                    f"{what}: {conn.name} {path}: its 'next' link points to a page already read "
                    "in this listing (the server's paging loops); the listing stopped here"
                )
            visited.add(conn.url(str(nxt)))
            url, params = str(nxt), None  # ``next`` carries the query
        elif page_size is not None and len(rows) >= page_size:
            offset += len(rows)
            url, params = path, {**first, "offset": offset}
        else:
            return


def parse_time(text: str) -> dt.datetime:
    """An ISO 8601 time as a source writes it (``Z`` accepted); a naive one stays naive."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def time_check(value: str) -> str | None:
    """None for an ISO 8601 time, else what an option or a row should have held."""
    try:
        parse_time(value)
    except ValueError:
        return "expected an ISO 8601 time such as 2026-11-01T00:00:00Z"
    return None


def yaml_time(opts: Options, name: str) -> None:
    """YAML reads an unquoted time (``start: 2026-11-01T00:00:00Z``) as a datetime: make it
    the ISO text the option expects."""
    if isinstance(opts.data.get(name), dt.date):
        opts.data[name] = opts.data[name].isoformat()


def row_exchange(run: RunContext, ref: OrderRef, **attributes: str) -> Exchange:
    """The unit's document is the row the source listed (no detail call)."""
    return Exchange(
        pk=ref.pk,
        number=ref.number,
        order=dict(ref.summary),
        attributes={**attributes, "flow.name": run.flow.name, "run.id": str(run.run_id)},
    )
