"""The hostile suite's cases and their one shared check.

The ``hostile`` fixture (``tests/hostile/conftest.py``): the sandbox (8 orders), a
``HostileProxy`` in front of each server, and a project whose connectors point at the proxies,
with short timeouts (``Timeout: 1``, two quick tries), no backoff between runs and
``settle_seconds: 0`` (the proxy forwards a write whole before it misbehaves: the ERP has it by
then). ``Hostile.case`` runs a ``Case``: the rule on, one run of
``integrator run-flow order_flow``; the proxies back to pass-through, a second run; then every
promise is checked at once (``Hostile.check``) and the test fails with the list of what broke
and what each run printed.

The runs go through ``measure.py``: a deadline (``RUN_BOUND``), a memory ceiling and the
runner's peak RSS.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from integrator.sandbox import Sandbox
from support import Project, stats
from support.proxy import HostileProxy, Rule

MEASURE = Path(__file__).with_name("measure.py")
TIMEOUT = 1  # the connectors' Timeout, seconds
RUN_BOUND = 10.0  # a run (startup included) must end by itself within this
RSS_LIMIT_MB = 256  # the runner's peak RSS
HELD = ("sent", "marked", "quarantined")  # journal states of an order held for a person


@dataclass
class Run:
    """A finished, measured run."""

    code: int
    out: str
    err: str
    seconds: float
    killed: bool
    max_rss_mb: float

    @property
    def text(self) -> str:
        """stdout and stderr."""
        return self.out + self.err


@dataclass(frozen=True)
class Case:
    """One hostile case: which answer misbehaves and what the user must be told."""

    connector: str  # "omnitron" or "erp": the proxy the rule goes on
    where: str  # detail, query, write, mark: a call of one order; or login, list: every one
    mode: str
    keywords: tuple[str, ...] = ()  # run 1's output names the connector and one of these
    fails: bool = True  # the order fails in run 1 (False: it goes through)
    may_hold: bool = False  # the order may be held for a person: in the ERP once, unmarked
    may_recover: bool = False  # the run may settle the order itself (then nothing to tell)
    status: int = 0
    to: str = "same"
    forward: bool = True  # the server gets the request (the ERP commits the write)
    key: str = ""

    @property
    def alone(self) -> bool:
        """Only the target order is hit: every other one goes through in run 1."""
        return self.where not in ("login", "list")


@dataclass
class Hostile:
    """The sandbox, a proxy in front of each server, and a project aimed at the proxies."""

    sb: Sandbox
    omnitron: HostileProxy
    erp: HostileProxy
    project: Project
    numbers: list[str]  # the unsent orders, all to be delivered
    runs: list[Run] = field(default_factory=list)

    def proxy(self, connector: str) -> HostileProxy:
        """The proxy in front of ``connector``."""
        return {"omnitron": self.omnitron, "erp": self.erp}[connector]

    def pk(self, number: str) -> int:
        """Omnitron's pk of an order."""
        return int(next(o["pk"] for o in self.sb.omnitron.orders.values() if o["number"] == number))

    def rule(self, case: Case, number: str) -> Rule:
        """Put ``case``'s rule on its proxy, aimed at order ``number`` (or at the login)."""
        match: dict[str, Any] = {
            "detail": {"method": "GET",
                       "path": rf"/orders_integration/{self.pk(number)}/detailed_integration/"},
            "query": {"method": "GET", "path": rf"^/api/orders/\?(.*&)?number={number}(&|$)"},
            "write": {"method": "POST", "path": r"^/api/orders/$", "body": f'"{number}"'},
            "mark": {"method": "PATCH", "path": rf"/orders/{self.pk(number)}/$"},
            "login": {"method": "POST", "path": r"/auth/login/$"},
            "list": {"method": "GET", "path": r"/api/(i1|v1)/orders/(\?|$)"},
        }[case.where]  # fmt: skip
        return self.proxy(case.connector).hostile(
            case.mode, status=case.status, to=case.to, forward=case.forward, key=case.key,
            **match,
        )  # fmt: skip

    def run(self, *args: str, bound: float = RUN_BOUND) -> Run:
        """``integrator run-flow order_flow ARGS``, measured; killed after ``bound``."""
        report = self.project.root / f"measure-{len(self.runs) + 1}.json"
        cmd = [sys.executable, str(MEASURE), str(report), str(bound), "--",
               sys.executable, "-m", "integrator", "run-flow", "order_flow", "--no-progress",
               *args]  # fmt: skip
        proc = subprocess.Popen(
            cmd, cwd=self.project.root, env={**os.environ, **self.project.env},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        try:
            out, err = proc.communicate(timeout=bound + 20)
        except subprocess.TimeoutExpired:  # measure.py itself is stuck: end the whole group
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise AssertionError(f"measure.py did not return within {bound + 20:g} s") from None
        m = json.loads(report.read_text())
        run = Run(m["code"], out, err, m["seconds"], m["killed"], m["max_rss_kb"] / 1024)
        self.runs.append(run)
        return run

    def transcript(self) -> list[str]:
        """What each run printed (for a failing test's message)."""
        return [
            f"--- run {i}: exit {r.code}, {r.seconds:.1f} s, peak RSS {r.max_rss_mb:.0f} MB"
            f"{', killed' if r.killed else ''}\n{_tail(r.text, 3000)}"
            for i, r in enumerate(self.runs, 1)
        ]

    def delivered(self, number: str) -> bool:
        """In the ERP exactly once and marked sent in Omnitron."""
        return self.sb.erp.received.get(number, 0) == 1 and self.sent(number)

    def sent(self, number: str) -> bool:
        """Marked sent in Omnitron."""
        return any(o["is_send"] for o in self.sb.omnitron.orders.values() if o["number"] == number)

    def case(self, case: Case) -> list[str]:
        """Run ``case`` against one order, then a clean run; the problems found (see check)."""
        target = self.numbers[1]
        rule = self.rule(case, target)
        first = self.run()
        self.omnitron.clear()
        self.erp.clear()
        after_first = {n: self.delivered(n) for n in self.numbers}
        second = self.run()
        return self.check(case, target, rule, first, second, after_first)

    def check(
        self, case: Case, target: str, rule: Rule, first: Run, second: Run,
        after_first: dict[str, bool],
    ) -> list[str]:  # fmt: skip
        """Every promise of the suite, for a case run against ``target``:

        0. the case happened (its rule was hit);
        1. no order is in the ERP twice; none is marked sent in Omnitron without being in it;
        2. nothing lost: after the clean run every order is in the ERP and marked sent (or,
           where the case allows it, held for a person: in the ERP once, its row held);
           the others went through in run 1 already (one order's failure is its own);
        3. both runs ended by themselves within RUN_BOUND;
        4. the runner's peak RSS stayed under RSS_LIMIT_MB;
        5. no traceback; run 1's output names the connector and the case (unless the case
           lets the run settle the order itself, and it did);
        and no body, credential or cookie reached another host; the ERP holds only
        JSON-representable payloads.
        """
        bad: list[str] = []
        if rule.hits == 0:
            bad.append(f"the case never happened: no request matched {rule}")
        erp = stats(self.sb.erp.url)
        if erp["duplicates"]:
            bad.append(f"in the ERP twice: {erp['duplicate_numbers']}")
        phantom = [o["number"] for o in self.sb.omnitron.orders.values()
                   if o["is_send"] and o["number"] not in self.sb.erp.orders]  # fmt: skip
        if phantom:
            bad.append(f"marked sent in Omnitron, not in the ERP: {phantom}")
        for n in self.numbers:
            if self.delivered(n):
                continue
            state = self.project.state(n)
            if n == target and case.may_hold and self.sb.erp.received.get(n) == 1:
                if state not in HELD:
                    bad.append(f"{n}: in the ERP, unmarked, its row {state} (not held)")
                continue
            bad.append(
                f"{n} lost after the clean run: {self.sb.erp.received.get(n, 0)} times in the "
                f"ERP, marked sent: {self.sent(n)}, state {state}"
            )
        if case.alone or not case.fails:
            late = [n for n in self.numbers if not after_first[n]
                    and (n != target or not case.fails)]  # fmt: skip
            if late:
                bad.append(f"not delivered by run 1 (one order's trouble stopped others): {late}")
        for name, run in (("run 1", first), ("run 2", second)):
            if run.killed:
                bad.append(f"{name} did not end by itself within {RUN_BOUND:g} s (killed)")
            elif run.code < 0:
                bad.append(f"{name} died of signal {-run.code}")
            if run.max_rss_mb > RSS_LIMIT_MB:
                bad.append(f"{name} peak RSS {run.max_rss_mb:.0f} MB > {RSS_LIMIT_MB} MB")
            if "Traceback" in run.text:
                bad.append(f"{name} printed a traceback")
        recovered = case.may_recover and after_first[target]
        if case.fails and not recovered:
            if not re.search(rf"(?<![\w-]){case.connector}(?![\w-])", first.text):
                bad.append(f"run 1's output does not name connector {case.connector!r}")
            if case.keywords and not any(k in first.text.lower() for k in case.keywords):
                bad.append(f"run 1's output says none of {case.keywords}")
        elif not case.fails and first.code != 0:
            bad.append(f"run 1 should have gone through, exit {first.code}")
        for proxy in (self.omnitron, self.erp):
            bad += [f"another host received {leak}" for leak in proxy.trap.leaks()]
        for n in self.numbers:
            payload = self.sb.erp.payload(n)
            try:
                json.dumps(payload, allow_nan=False)
            except ValueError:
                bad.append(f"{n}: the ERP received a body that is not JSON (NaN or Infinity)")
        return bad


def _tail(text: str, size: int = 1500) -> str:
    return text if len(text) <= size else "…" + text[-size:]


def prepare(root: Path, timeout: float = TIMEOUT) -> None:
    """Short timeouts and quick tries on both connectors; no backoff; no settling wait."""
    cfg = root / "config.yaml"
    text = cfg.read_text()
    retry = "    Retry: {Attempts: 2, BaseSeconds: 0.05, CapSeconds: 0.2}\n"
    for anchor in ('      HeaderFormat: "Token {token}"\n', "    BearerToken: ${ERP_TOKEN}\n"):
        old = anchor + "    Timeout: 30\n"
        assert old in text, f"{old!r} not in config.yaml"
        text = text.replace(old, anchor + f"    Timeout: {timeout:g}\n" + retry)
    cfg.write_text(text)
    flow = root / "flows" / "order_flow.yaml"
    text = flow.read_text()
    assert "max_attempts: 5\n" in text
    flow.write_text(
        text.replace(
            "max_attempts: 5\n", "max_attempts: 5\nbackoff_seconds: 0\nsettle_seconds: 0\n"
        )
    )
