"""Ledger and SIEM export speed: append, verify, inclusion proofs, export to a real rsyslog.

    .venv/bin/python bench/ledger_bench.py [--append 20000] [--verify 1000000] [--proofs 2000]
                                           [--export 100000] [--append-onto 20000] [--revision REV]
                                           [--no-postgres] [--keep DIR]

1. append entries/s through the service's path (batches of 500, Merkle nodes included), SQLite and
   PostgreSQL (a throwaway cluster);
2. verify: a ledger of `--verify` entries is built straight into SQLite (same bytes as the service writes),
   then `verify_ledger` recomputes every hash, link, root and checkpoint; on a copy of it, `--append-onto`
   more entries are appended as the audit writer appends them (batches of 64, random event ids): entries/s,
   CPU and bytes written per entry once the ledger is large (`--revision au0003`: the ledger's schema
   before its hash indexes were dropped, to compare);
3. inclusion proofs on that ledger: in-process p50/p99 (cold and warm node cache), and over NATS
   request/reply to the audit service (a real process, the API path);
4. export to rsyslog (octet-counted TCP, CEF): events/s until rsyslog has written every one.
Goals (issue 6): append >= 5,000/s, verify 1M <= 30 s, a proof <= 1 ms, export >= 10,000/s. Every step is
bounded in size; `--verify 200000` keeps the whole run near a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import cpu_seconds, tree_pids

from switchyard.audit import proofs, tree
from switchyard.audit.chain import EntryFields, canonical_json, chain_hash, entry_bytes, leaf_hash
from switchyard.audit.checkpoints import make_checkpoint
from switchyard.audit.db import migrations
from switchyard.audit.entries import EntryDraft
from switchyard.audit.export.exporter import ExportJob, run_export
from switchyard.audit.export.formats import Encoder
from switchyard.audit.export.sinks import StreamSink
from switchyard.audit.service import TipCache, append_entries, head
from switchyard.audit.signing import parse_private_key, signer_from
from switchyard.audit.verify import verify_ledger
from switchyard.cli.processes import NatsServer, PostgresCluster
from switchyard.common import subjects
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.ids import new_id
from tests.support.bus_services import BusService
from tests.support.ledger import draft
from tests.support.rsyslog import Rsyslog

SEED = "88" * 32
SIGNER = signer_from(parse_private_key(SEED.encode()), origin="bench.local/ledger")
T0 = datetime(2026, 11, 1, tzinfo=UTC)


async def bench_append(url: str, n: int, label: str, revision: str) -> float:
    await migrations().upgrade(url, revision)
    engine = create_engine(url)
    sessions = sessionmaker(engine)
    try:
        start = time.perf_counter()
        for first in range(1, n + 1, 500):
            await append_entries(sessions, drafts=[draft(i) for i in range(first, min(first + 500, n + 1))])
        rate = n / (time.perf_counter() - start)
    finally:
        await engine.dispose()
    print(
        f"append  {label:10s} {n:>9,d} entries  {rate:>9,.0f} entries/s  (batches of 500, with Merkle nodes)"
    )
    return rate


def _stamp(value: datetime) -> str:
    """How SQLAlchemy stores a DateTime in SQLite (naive UTC, microseconds)."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def build_sqlite(path: Path, n: int, revision: str) -> None:
    """Writes n entries, their Merkle nodes and checkpoints every 100,000 straight into SQLite."""
    asyncio.run(migrations().upgrade(f"sqlite+aiosqlite:///{path}", revision))
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    prev, size, edge = "0" * 64, 0, {}
    step = 20_000
    start = time.perf_counter()
    for first in range(1, n + 1, step):
        rows, leaves = [], []
        for seq in range(first, min(first + step, n + 1)):
            d = draft(seq, tenant="acme" if seq % 3 else "globex")
            at = T0 + timedelta(milliseconds=seq)
            fields = EntryFields(
                seq,
                d.event_id,
                at,
                at,
                d.tenant_id,
                d.actor,
                d.action,
                d.resource,
                d.outcome,
                canonical_json(d.details),
            )
            leaf = leaf_hash(entry_bytes(fields))
            digest = chain_hash(prev, leaf)
            rows.append(
                (
                    seq,
                    d.event_id,
                    _stamp(at),
                    _stamp(at),
                    d.tenant_id,
                    d.actor,
                    d.action,
                    d.resource,
                    d.outcome,
                    fields.details,
                    prev,
                    digest,
                )
            )
            leaves.append(leaf)
            prev = digest
        made = tree.extend(size, edge, leaves)
        db.executemany("INSERT INTO ledger_entries VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        db.executemany("INSERT INTO merkle_nodes VALUES (?,?,?)", made)
        db.commit()
        size += len(rows)
        known = {(lv, ix): h for lv, ix, h in made} | edge
        edge = {node: known[node] for node in tree.frontier(size)}
        if size % 100_000 == 0 or size == n:
            asyncio.run(sign_checkpoints(f"sqlite+aiosqlite:///{path}"))
    db.close()
    print(f"build   {n:,d} entries in {time.perf_counter() - start:.1f}s (generated straight into SQLite)")


def _written() -> int:
    """Bytes this process has handed to write calls so far (the database file and its WAL)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


def _drafts(first: int, end: int) -> list[EntryDraft]:
    """Entries first..end-1 with random event ids, as the bus's are (derived ids are uuid5 hex)."""
    return [draft(i, event_id=new_id()) for i in range(first, end)]


async def bench_append_onto(big: Path, n: int, folder: Path, batch: int = 64) -> None:
    """Appends n entries onto a copy of the built ledger as the audit writer does: batches of the events its
    consumer holds (64), its tip remembered, event ids random as the bus's are."""
    path = folder / "append-onto.db"
    shutil.copyfile(big, path)
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    sessions, tip = sessionmaker(engine), TipCache()
    try:
        size, _ = await head(sessions)
        last = size + n
        cpu, wrote, start = time.process_time(), _written(), time.perf_counter()
        for first in range(size + 1, last + 1, batch):
            await append_entries(sessions, drafts=_drafts(first, min(first + batch, last + 1)), tip=tip)
        elapsed = time.perf_counter() - start
        cpu_us, kib = (time.process_time() - cpu) / n * 1e6, (_written() - wrote) / n / 1024
    finally:
        await engine.dispose()
        path.unlink(missing_ok=True)
    print(
        f"append  onto {size:,d} entries: {n:,d} in batches of {batch}: {n / elapsed:,.0f} entries/s, "
        f"{cpu_us:,.0f} us CPU and {kib:.1f} KiB written per entry"
    )


async def bench_append_onto_postgres(cluster: PostgresCluster, size: int, n: int, batch: int = 64) -> None:
    """`bench_append_onto` on PostgreSQL: the ledger filled to `size` entries through the service's path
    (batches of 500), then n more appended as the audit writer does; the server's CPU (every process of
    the cluster) and the WAL it wrote are counted besides this process's CPU."""
    engine = create_engine(cluster.url())
    sessions, tip = sessionmaker(engine), TipCache()
    try:
        first, _ = await head(sessions)
        for start_at in range(first + 1, size + 1, 500):
            await append_entries(sessions, drafts=_drafts(start_at, min(start_at + 500, size + 1)), tip=tip)
        postmaster = int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
        wal = await _wal_bytes(engine)
        server, cpu, start = cpu_seconds(tree_pids(postmaster)), time.process_time(), time.perf_counter()
        for start_at in range(size + 1, size + n + 1, batch):
            drafts = _drafts(start_at, min(start_at + batch, size + n + 1))
            await append_entries(sessions, drafts=drafts, tip=tip)
        elapsed = time.perf_counter() - start
        client_us = (time.process_time() - cpu) / n * 1e6
        server_us = (cpu_seconds(tree_pids(postmaster)) - server) / n * 1e6
        wal_kib = (await _wal_bytes(engine) - wal) / n / 1024
    finally:
        await engine.dispose()
    print(
        f"append  onto {size:,d} entries (PostgreSQL): {n:,d} in batches of {batch}: {n / elapsed:,.0f} "
        f"entries/s, {client_us:,.0f} us CPU here and {server_us:,.0f} us in the server, {wal_kib:.1f} KiB "
        "of WAL per entry"
    )


async def _wal_bytes(engine: AsyncEngine) -> float:
    """How far the server's write-ahead log has come, in bytes."""
    async with engine.connect() as conn:
        query = text("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')")
        return float((await conn.execute(query)).scalar_one())


async def sign_checkpoints(url: str) -> None:
    engine = create_engine(url)
    try:
        await make_checkpoint(sessionmaker(engine), signer=SIGNER)
    finally:
        await engine.dispose()


async def bench_verify(url: str, n: int) -> float:
    engine = create_engine(url)
    try:
        start = time.perf_counter()
        report = await verify_ledger(sessionmaker(engine), trusted=[SIGNER.key])
        elapsed = time.perf_counter() - start
    finally:
        await engine.dispose()
    assert report.ok and report.entries == n and report.checkpoints >= 1, report
    print(
        f"verify  {n:>9,d} entries in {elapsed:6.1f}s  ({n / elapsed:,.0f} entries/s; "
        f"chain, tree, {report.checkpoints} checkpoints)"
    )
    return elapsed


async def bench_proofs(url: str, n: int, count: int) -> None:
    """The service's proof path (`ProofServer`), without the bus: nodes read each time, then cached."""
    engine = create_engine(url)
    server = proofs.ProofServer(url, engine)
    rng = random.Random(6)
    try:
        for label, capacity in (("nodes read each time", 0), ("node cache warm", 1_000_000)):
            server.cache = proofs.NodeCache(capacity)
            if capacity:
                for _ in range(count):
                    await server.inclusion(seq=rng.randint(1, n))
            times = []
            for _ in range(count):
                start = time.perf_counter()
                await server.inclusion(seq=rng.randint(1, n))
                times.append((time.perf_counter() - start) * 1000)
            _report("proof", f"in-process, {label}", times)
    finally:
        server.close()
        await engine.dispose()


async def bench_proofs_rpc(url: str, n: int, count: int, folder: Path) -> None:
    server = NatsServer(folder / "jetstream").start()
    env = {
        "SWITCHYARD_NATS_URL": server.url,
        "SWITCHYARD_DATABASE_URL": url,
        "SWITCHYARD_VAR_DIR": str(folder),
        "SWITCHYARD_AUDIT_SIGNING_KEY": SEED,
        "SWITCHYARD_AUDIT_LOG_ORIGIN": "bench.local/ledger",
        "SWITCHYARD_METRICS_PORT": "0",
        "SWITCHYARD_EVENT_ID_SECRET": "ledger-bench-event-id-secret-7d1e",  # required on PostgreSQL
    }
    audit = BusService("audit", env=env, log_path=folder / "audit.log")
    try:
        await audit.start()
        nc = await nats.connect(server.url)
        rng = random.Random(7)

        def ask(seq: int) -> bytes:  # each entry's own tenant, as `fill` wrote it (a request names one)
            return orjson.dumps({"seq": seq, "tenant_id": "acme" if seq % 3 else "globex"})

        for _ in range(count):  # warm the node cache as a long-running service has it
            await nc.request(subjects.LEDGER_RPC_INCLUSION, ask(rng.randint(1, n)), timeout=5)
        times = []
        for _ in range(count):
            body = ask(rng.randint(1, n))
            start = time.perf_counter()
            reply = await nc.request(subjects.LEDGER_RPC_INCLUSION, body, timeout=5)
            times.append((time.perf_counter() - start) * 1000)
            assert b'"proof"' in reply.data, reply.data[:200]
        await nc.close()
        _report("proof", "NATS request/reply to audit", times)
    finally:
        audit.stop()
        server.stop()


def _report(what: str, label: str, ms: list[float]) -> None:
    ms.sort()
    p99 = ms[int(len(ms) * 0.99) - 1]
    print(f"{what:7s} {label:32s} p50 {statistics.median(ms):.3f} ms  p99 {p99:.3f} ms  (n={len(ms)})")


async def bench_export(url: str, n: int, folder: Path) -> None:
    (folder / "rsyslog" / "received.jsonl").unlink(missing_ok=True)
    receiver = Rsyslog(folder / "rsyslog").start()
    engine = create_engine(url)
    try:
        encoder = Encoder(fmt="cef", framing="syslog", hostname="bench")

        async def open_sink() -> StreamSink:
            return await StreamSink("127.0.0.1", receiver.port, settle_s=0.0).open()

        job = ExportJob(encoder=encoder, open_sink=open_sink, batch=1000, from_seq=1)
        stop = asyncio.Event()
        counter = LineCounter(receiver.output)
        start = time.perf_counter()
        task = asyncio.create_task(run_export(sessionmaker(engine), job, stop=stop))
        while counter.count() < n:
            if task.done():
                task.result()
                raise RuntimeError("the exporter stopped early")
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - start
        stop.set()
        await task
        print(
            f"export  {n:>9,d} entries in {elapsed:6.1f}s  ({n / elapsed:,.0f} events/s, "
            "CEF over octet-counted "
            "TCP, until rsyslog had written all)"
        )
    finally:
        await engine.dispose()
        receiver.stop()


class LineCounter:
    """Counts lines of a growing file, reading only what was added since the last look."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.lines = 0

    def count(self) -> int:
        if self.path.exists():
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
            self.offset += len(data)
            self.lines += data.count(b"\n")
        return self.lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--append", type=int, default=20_000)
    parser.add_argument("--verify", type=int, default=1_000_000)
    parser.add_argument("--proofs", type=int, default=2_000)
    parser.add_argument("--export", type=int, default=100_000)
    parser.add_argument("--append-onto", type=int, default=20_000)
    parser.add_argument("--revision", default="head", help="the audit schema to bench (e.g. au0003)")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--keep", help="keep the built ledger in this folder (reused when present)")
    args = parser.parse_args()
    folder = Path(args.keep or tempfile.mkdtemp(prefix="ledger-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"ledger bench on {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; data in {folder}")
    try:
        asyncio.run(
            bench_append(f"sqlite+aiosqlite:///{folder / 'append.db'}", args.append, "SQLite", args.revision)
        )
        (folder / "append.db").unlink(missing_ok=True)
        if not args.no_postgres and PostgresCluster.available():
            pg_base = Path(tempfile.mkdtemp(prefix="ledger-bench-pg-"))
            cluster = PostgresCluster(pg_base).start()
            try:
                asyncio.run(bench_append(cluster.url(), args.append, "PostgreSQL", args.revision))
                if args.append_onto:
                    asyncio.run(bench_append_onto_postgres(cluster, args.verify, args.append_onto))
            finally:
                cluster.stop()
                shutil.rmtree(pg_base, ignore_errors=True)
        big = folder / f"ledger-{args.verify}-{args.revision}.db"
        url = f"sqlite+aiosqlite:///{big}"
        if not big.exists():
            build_sqlite(big, args.verify, args.revision)
        asyncio.run(bench_verify(url, args.verify))
        if args.append_onto:
            asyncio.run(bench_append_onto(big, args.append_onto, folder))
        asyncio.run(bench_proofs(url, args.verify, args.proofs))
        asyncio.run(bench_proofs_rpc(url, args.verify, args.proofs, folder))
        if Rsyslog.available():
            asyncio.run(bench_export(url, min(args.export, args.verify), folder))
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
