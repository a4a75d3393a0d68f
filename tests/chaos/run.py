"""The long chaos run (`make chaos`): the scenarios of tests/chaos/test_chaos.py for longer, at a chosen
rate, on both deployments: the embedded one (`switchyard up`: one nats-server, SQLite) and a clustered one
(a 3-node JetStream cluster with R3 streams, PostgreSQL). Exit 1 if an invariant broke.

    make chaos                                       # 3 rounds each, 5 tasks/s
    make chaos CHAOS_ARGS="--rounds 10 --rate 8"
    make chaos CHAOS_ARGS="--only embedded --rounds 1 --wait-each"
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

from switchyard.cli.processes import PostgresCluster
from tests.chaos.cluster import NatsCluster
from tests.chaos.scenarios import Report, under_load
from tests.chaos.stack import ChaosStack


async def embedded(folder: Path, args: argparse.Namespace) -> Report:
    stack = ChaosStack(folder / "embedded").start()
    try:
        return await under_load(
            stack,
            rate=args.rate,
            rounds=args.rounds,
            gap_s=args.gap,
            wait_each=args.wait_each,
            bus_rate=args.bus_rate,
        )
    finally:
        stack.stop()


async def clustered(folder: Path, args: argparse.Namespace) -> Report:
    pg_base = Path(tempfile.mkdtemp(prefix="switchyard-chaos-pg-"))
    postgres = PostgresCluster(pg_base).start()
    nats_cluster = NatsCluster(folder / "nats").start()
    stack = ChaosStack(
        folder / "clustered", database_url=postgres.url(), nats_url=nats_cluster.url, stream_replicas=3
    )
    try:
        stack.start()
        return await under_load(
            stack,
            rate=args.rate,
            rounds=args.rounds,
            gap_s=args.gap,
            wait_each=args.wait_each,
            cluster=nats_cluster,
            postgres=postgres,
            outage_s=args.db_outage,
            bus_rate=args.bus_rate,
        )
    finally:
        stack.stop()
        nats_cluster.stop()
        postgres.stop()
        shutil.rmtree(pg_base, ignore_errors=True)


async def main_async(args: argparse.Namespace) -> int:
    folder = args.folder or Path(tempfile.mkdtemp(prefix="switchyard-chaos-"))
    failed = False
    for name, scenario in (("embedded", embedded), ("clustered", clustered)):
        if args.only and args.only != name:
            continue
        print(f"== {name}: {args.rounds} round(s) at {args.rate:g} tasks/s (data in {folder})", flush=True)
        report = await scenario(folder, args)
        print(report.text(), flush=True)
        failed = failed or bool(report.problems)
    print("CHAOS FAILED" if failed else "CHAOS PASSED: nothing lost")
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="fault rounds per deployment (default 3)")
    parser.add_argument("--rate", type=float, default=5.0, help="tasks submitted per second (default 5)")
    parser.add_argument("--gap", type=float, default=2.0, help="seconds between faults (default 2)")
    parser.add_argument("--wait-each", action="store_true", help="wait for recovery after each kill")
    parser.add_argument(
        "--db-outage", type=float, default=0.0, help="clustered: PostgreSQL down this many s each round"
    )
    parser.add_argument(
        "--bus-rate",
        type=float,
        default=0.0,
        help="another system's tasks a second on the bus",
    )
    parser.add_argument("--only", choices=("embedded", "clustered"), default=None)
    parser.add_argument("--folder", type=Path, default=None, help="where the runs keep data and logs")
    sys.exit(asyncio.run(main_async(parser.parse_args())))


if __name__ == "__main__":
    main()
