"""The chaos scenarios, shared by the bounded tests (tests/chaos/test_chaos.py) and the long run
(`make chaos`, tests/chaos/run.py). Each runs a steady load, injects its faults, stops the load, then checks
the invariants and returns what it measured."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter
from dataclasses import dataclass, field

from switchyard.audit.models import LedgerEntry
from switchyard.cli.processes import PostgresCluster
from switchyard.common import subjects
from tests.chaos.cluster import NatsCluster, restart_postgres
from tests.chaos.integrator import BusStats, integrate
from tests.chaos.load import (
    LoadStats,
    Outcome,
    charged_unaccepted,
    check_invariants,
    read_dead_letters,
    read_ledger,
    steady_load,
)
from tests.chaos.stack import SERVICES, ChaosStack, restart_exporter_after_kill
from tests.support.siem_checks import check_syslog

KEEPERS = (  # the consumers whose events are charges and audit records
    subjects.BILLING_CONSUMER.durable,
    subjects.BILLING_CALLS_CONSUMER.durable,
    subjects.AUDIT_CONSUMER.durable,
)


@dataclass
class Report:
    faults: list[str] = field(default_factory=list)  # "<fault>: back in <s> s"
    load: LoadStats = field(default_factory=LoadStats)
    outcome: Outcome | None = None
    siem: dict[str, int] = field(default_factory=dict)
    dead_letters: Counter[str] = field(default_factory=Counter)  # "<consumer> <code>" -> how many
    charged_unaccepted: dict[str, list[str]] = field(default_factory=dict)  # key -> its attempts' answers
    bus: BusStats | None = None  # another system's tasks on the bus, if it ran (`bus_rate`)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def text(self) -> str:
        o = self.outcome
        lines = [f"{len(self.faults)} faults in {self.seconds:.0f} s:", *(f"  {f}" for f in self.faults)]
        lines.append(f"load: {self.load.summary()}")
        if self.bus is not None:
            lines.append(f"bus: {self.bus.summary()}")
        if o is not None:
            lines.append(
                f"results: {o.completed} completed, failed {dict(o.failed)}, {o.duplicate_results} duplicate "
                f"result events; charges {sum(o.charges.values())} for {len(o.charges)} tasks; "
                f"ledger {len(o.ledger_rows)} entries"
            )
        lines.append(f"SIEM: {self.siem}")
        lines.append(f"dead letters: {dict(self.dead_letters) or 'none'}")
        if self.charged_unaccepted:
            lines.append(
                f"charged, never told 202 (an attempt's answer lost): {len(self.charged_unaccepted)}"
            )
            lines += [f"  {k}: {' '.join(tried)}" for k, tried in list(self.charged_unaccepted.items())[:10]]
        lines.append(f"invariants: {'all hold' if not self.problems else self.problems}")
        return "\n".join(lines)


async def _timed(fault: str, report: Report, action: object) -> None:
    started = time.monotonic()
    await asyncio.to_thread(action)  # type: ignore[arg-type]
    report.faults.append(f"{fault}: back in {time.monotonic() - started:.1f} s")


async def finish(stack: ChaosStack, report: Report, *, settle_s: float = 90.0) -> Report:
    """Checks the invariants after the load stopped."""
    accepted = report.load.accepted + (report.bus.published if report.bus is not None else [])
    outcome, problems = await check_invariants(stack.bus_url, stack.db_url, accepted, timeout=settle_s)
    if report.bus is not None and (unheard := [t for t in report.bus.published if not report.bus.heard[t]]):
        problems.append(f"{len(unheard)} bus tasks never answered through the durable, e.g. {unheard[:3]}")
    report.outcome = outcome
    report.problems += problems
    report.charged_unaccepted = charged_unaccepted(report.load, outcome.charges)
    verify = await asyncio.to_thread(stack.cli, "ledger", "verify")
    if verify.returncode != 0:
        report.problems.append(f"ledger verify: {verify.stdout.strip()} {verify.stderr.strip()[-500:]}")
    for letter in await read_dead_letters(stack.bus_url):
        report.dead_letters[f"{letter.consumer or letter.service} {letter.code}"] += 1
    # A charge or an audit record in the dead letters waits for an operator's replay: lost until then.
    held = {k: n for k, n in report.dead_letters.items() if k.split()[0] in KEEPERS}
    if held:
        report.problems.append(f"charges or audit records dead-lettered: {held}")
    if stack.rsyslog is not None:
        report.siem, problem = await check_siem(stack, outcome.ledger_rows, settle_s=settle_s)
        report.problems += [problem] if problem else []
    return report


async def check_siem(
    stack: ChaosStack, rows: dict[int, LedgerEntry], *, settle_s: float
) -> tuple[dict[str, int], str | None]:
    """What the SIEM received against the ledger, and the problem if it does not match within `settle_s`.
    Against the ledger as it is at each try: `rows` were read once every task's submit, completion and
    charge were in it, and entries of other events (routing, provider calls) may be appended after, by an
    audit service catching up after its restart."""
    assert stack.rsyslog is not None
    deadline = time.monotonic() + settle_s
    while True:
        try:
            return check_syslog(stack.rsyslog.records(), rows, "cef"), None
        except AssertionError as exc:
            if time.monotonic() > deadline:
                return {}, f"SIEM: {exc}"
            await asyncio.sleep(1.0)
            rows = await read_ledger(stack.db_url)


async def kill_services(stack: ChaosStack, report: Report, *, gap_s: float, wait_each: bool) -> None:
    """kill -9 each service in turn (the supervisor restarts it), then the SIEM exporter. `wait_each`: wait
    until everything is ready again before the next kill; otherwise the outages overlap."""
    for name in SERVICES:
        pid = stack.kill_service(name)
        if wait_each:
            await asyncio.sleep(0.3)
            await _timed(f"kill -9 {name} (pid {pid})", report, stack.wait_ready)
        else:
            report.faults.append(f"kill -9 {name} (pid {pid})")
        await asyncio.sleep(gap_s)
    if not wait_each:
        await _timed("every service ready again after the kills", report, stack.wait_ready)
    restart_exporter_after_kill(stack)
    report.faults.append("kill -9 the SIEM exporter, restarted")


async def restart_services(stack: ChaosStack, report: Report, *, gap_s: float) -> None:
    """A rolling restart: SIGTERM each service in turn (a graceful stop: work running past the stop grace is
    cut, the gateway's requests answered 503 and its admissions handed over, the consumers' messages given
    back), and wait until the supervisor's new process is ready before the next."""
    for name in SERVICES:
        pid = stack.kill_service(name, signal.SIGTERM)
        t0 = time.monotonic()
        while stack.service_pid(name) in (pid, None):
            if time.monotonic() - t0 > 60:
                raise RuntimeError(f"{name} (pid {pid}) did not stop within 60 s of SIGTERM")
            await asyncio.sleep(0.1)
        stopped = time.monotonic() - t0
        ready = await asyncio.to_thread(stack.wait_ready)
        fault = f"SIGTERM {name} (pid {pid}): replaced in {stopped:.1f} s, ready in {ready:.1f} s"
        report.faults.append(fault)
        await asyncio.sleep(gap_s)


async def kill_stream_leader(cluster: NatsCluster, report: Report, *, gap_s: float) -> None:
    """kill -9 the node leading the events stream (R3), wait for a new leader, bring the node back."""
    leader = cluster.node(await asyncio.to_thread(cluster.stream_leader, subjects.STREAM_EVENTS))
    leader.kill()
    t0 = time.monotonic()
    new = leader.name
    while new == leader.name:  # a new leader is elected among the two left
        with contextlib.suppress(LookupError):
            new = await asyncio.to_thread(cluster.stream_leader, subjects.STREAM_EVENTS)
        await asyncio.sleep(0.2)
    report.faults.append(
        f"kill -9 the {subjects.STREAM_EVENTS} stream leader {leader.name}: new leader {new} in "
        f"{time.monotonic() - t0:.1f} s"
    )
    await asyncio.sleep(gap_s)
    leader.start()
    await asyncio.to_thread(cluster.wait_healthy)


async def restart_database(stack: ChaosStack, postgres: PostgresCluster, report: Report) -> None:
    down = await asyncio.to_thread(restart_postgres, postgres)
    report.faults.append(f"PostgreSQL stopped (immediate) and restarted: down {down:.1f} s")
    await _timed("every service ready after the database restart", report, stack.wait_ready)


async def database_outage(
    stack: ChaosStack, postgres: PostgresCluster, report: Report, *, down_s: float
) -> None:
    """PostgreSQL stopped (immediate) for `down_s` under load, then started again: what needs the database
    is answered 503 `database_unavailable` meanwhile, and the consumers that write to it (billing, audit,
    the classifier's outcomes) hold their events on the stream until it is back (bus.OUTAGE_RIDE_S)."""
    await asyncio.to_thread(postgres.stop)
    t0 = time.monotonic()
    await asyncio.sleep(down_s)
    await asyncio.to_thread(postgres.start_server)
    report.faults.append(f"PostgreSQL stopped (immediate) under load for {time.monotonic() - t0:.0f} s")
    await _timed("every service ready after the outage", report, stack.wait_ready)


async def under_load(
    stack: ChaosStack,
    *,
    rate: float,
    rounds: int = 1,
    gap_s: float = 1.0,
    wait_each: bool = True,
    cluster: NatsCluster | None = None,
    postgres: PostgresCluster | None = None,
    outage_s: float = 0.0,
    bus_rate: float = 0.0,
) -> Report:
    """A steady load; each round kills every service, restarts each in turn (SIGTERM), then (if given)
    kills the stream leader and restarts the database, and (`outage_s`) stops the database that long;
    then the invariants. `bus_rate`: another system also publishes tasks on the bus and reads their results
    from its durable consumer (tests/chaos/integrator.py). Providers misbehave throughout (stack.policy)."""
    report = Report()
    stop = asyncio.Event()
    started = time.monotonic()
    load = asyncio.create_task(
        steady_load(stack.base_url, stack.api_key, rate=rate, stop=stop, stats=report.load)
    )
    loads = [load]
    if bus_rate > 0:
        report.bus = BusStats()
        tenant_id = await asyncio.to_thread(stack.tenant_id)
        loads.append(
            asyncio.create_task(
                integrate(stack.bus_url, tenant_id, rate=bus_rate, stop=stop, stats=report.bus, settle_s=90.0)
            )
        )
    try:
        await asyncio.sleep(gap_s * 2)
        for _ in range(rounds):
            await kill_services(stack, report, gap_s=gap_s, wait_each=wait_each)
            await asyncio.sleep(gap_s)
            await restart_services(stack, report, gap_s=gap_s)
            await asyncio.sleep(gap_s)
            if cluster is not None:
                await kill_stream_leader(cluster, report, gap_s=gap_s)
                await asyncio.sleep(gap_s)
            if postgres is not None:
                await restart_database(stack, postgres, report)
                await asyncio.sleep(gap_s)
            if postgres is not None and outage_s > 0:
                await database_outage(stack, postgres, report, down_s=outage_s)
                await asyncio.sleep(gap_s)
    finally:
        stop.set()
        await asyncio.gather(*loads)
    report.seconds = time.monotonic() - started
    doubled = [k for k in report.load.refused if k.startswith("second task")]
    if doubled:
        report.problems.append(f"an Idempotency-Key got a second task: {doubled}")
    return await finish(stack, report)
