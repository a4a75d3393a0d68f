"""`python -m switchyard.common.healthcheck SERVICE`: exit 0 when this replica of a bus service is healthy.

For container health checks (Docker HEALTHCHECK, Kubernetes exec probes), configured by the same
environment as the service itself:

1. if SWITCHYARD_METRICS_PORT is set, the process serves `/metrics` on it, and its event loop's heartbeat
   there is recent: /metrics is served on a thread of its own, which answers while the loop (every
   handler, the lag gauges) is wedged;
2. the service answers its ping on the bus (`switchyard.ping.<service>`, core NATS): it is connected and
   its consumers run. Every replica answers a ping; one of the replies must come from this replica (its
   SWITCHYARD_INSTANCE, else its host name: in a container, the container's own), so a healthy sibling
   cannot hide a stuck replica. A replica that is stopping
   (SIGTERM: it finishes its running work and takes no more) says so in its reply and is not healthy.

`--liveness` skips the bus check: a replica that cannot reach NATS is not ready, but restarting it does
not help (it reconnects by itself), so liveness asks only whether the process serves and its loop runs.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time

import httpx
import nats
import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from pydantic import ValidationError
from pydantic_settings import SettingsError

from switchyard.common import subjects
from switchyard.common.config import CommonSettings, settings_problem
from switchyard.common.errors import ConfigurationError

# The gauge the service's event loop sets every few seconds (`service.HEARTBEAT`), and how old it may get:
# the loop's work is short (handlers await; models and encoders run on threads of their own).
HEARTBEAT_METRIC = "switchyard_event_loop_heartbeat_timestamp_seconds"
LOOP_STALL_S = 60.0


def check_metrics(port: int, *, timeout_s: float) -> str | None:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s)
    except httpx.HTTPError as exc:
        return f"/metrics on port {port} did not answer: {exc}"
    if response.status_code != 200:
        return f"/metrics on port {port} answered {response.status_code}"
    for line in response.text.splitlines():
        if line.startswith(f"{HEARTBEAT_METRIC} "):
            age = time.time() - float(line.split()[1])
            if age > LOOP_STALL_S:
                return (
                    f"the event loop last beat {age:.0f} s ago (more than {LOOP_STALL_S:g} s): it is wedged"
                )
    return None


async def check_ping(
    nats_url: str,
    service: str,
    *,
    instance: str,
    timeout_s: float,
    host: str = "",
    credentials: dict[str, str] | None = None,
) -> str | None:
    """Whether `service` answers its ping: the replica named `instance`, else the one on `host` (a ping
    reply names both), else any. `credentials`: nats-py's `user=` and `password=`."""
    try:
        nc = await nats.connect(
            nats_url,
            connect_timeout=timeout_s,
            max_reconnect_attempts=0,
            allow_reconnect=False,
            **(credentials or {}),
        )
    except Exception as exc:
        from switchyard.common.logs import redact  # only here: a probe that passes stays quick to start

        return redact(f"cannot connect to NATS at {nats_url}: {exc}")  # the URL may carry a password
    try:
        return await ping_problem(nc, service, instance=instance, host=host, timeout_s=timeout_s)
    finally:
        await nc.close()


async def ping_problem(
    nc: NATS, service: str, *, instance: str = "", host: str = "", timeout_s: float
) -> str | None:
    """What keeps `service` from being ready, as its ping replies on `nc` say (None: ready): the replica
    named `instance`, else the one on `host`, else any replica must answer, not stopping. The gateway's
    `/readyz?strict=true` asks it too, on its own connection."""
    replies: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def collect(msg: Msg) -> None:
        # the server answers "no responders" (status 503, empty body) when nobody is subscribed
        no_responders = bool(msg.headers) and msg.headers.get("Status") == "503"  # type: ignore[union-attr]
        await replies.put(None if no_responders or not msg.data else msg.data)

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=collect)
    try:
        await nc.publish(subjects.ping_subject(service), b"", reply=inbox)
        return await _first_problem(replies, service, instance=instance, host=host, timeout_s=timeout_s)
    finally:
        await sub.unsubscribe()


async def _first_problem(
    replies: asyncio.Queue[bytes | None], service: str, *, instance: str, host: str, timeout_s: float
) -> str | None:
    deadline = time.monotonic() + timeout_s
    answered = stopping = False
    while (left := deadline - time.monotonic()) > 0:
        try:
            async with asyncio.timeout(left):
                body = await replies.get()
        except TimeoutError:
            break
        if body is None:
            break
        answered = True
        reply = orjson.loads(body)
        if instance and reply.get("instance") != instance:
            continue
        if not instance and host and reply.get("host") != host:
            continue
        if not reply.get("stopping"):
            return None
        stopping = True
        if instance or host:
            since, name = reply.get("stopping_for_s", 0), instance or reply.get("instance")
            return (
                f"{service} instance {name!r} is stopping (for {since:g} s): "
                "it finishes its running work and takes no new"
            )
    if stopping:
        return f"{service}: every replica that answered the ping is stopping"
    if answered:
        mine = f"instance {instance!r}" if instance else f"the one on host {host!r}"
        return f"{service}: other replicas answered the ping, {mine} did not"
    return f"{service} did not answer its ping on {subjects.ping_subject(service)} within {timeout_s:g}s"


def run(service: str, *, liveness: bool, timeout_s: float, settings: CommonSettings) -> str | None:
    if settings.metrics_port:
        problem = check_metrics(settings.metrics_port, timeout_s=timeout_s)
        if problem or liveness:
            return problem
    if liveness:
        return None
    who = settings.nats_credentials()
    ping = check_ping(
        settings.nats_url,
        service,
        instance=settings.instance,
        host=socket.gethostname(),
        timeout_s=timeout_s,
        credentials=who.connect_options() if who is not None else None,
    )
    return asyncio.run(ping)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m switchyard.common.healthcheck",
        description="exit 0 when this replica of a bus service is healthy",
    )
    parser.add_argument("service", choices=[s for s in subjects.SERVICES if s != "gateway"])
    parser.add_argument("--liveness", action="store_true", help="only check that the process serves /metrics")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds for each check")
    args = parser.parse_args(argv)
    try:
        settings = CommonSettings()
    except (ValidationError, SettingsError) as exc:
        problem = settings_problem(exc)
        if problem is None:
            raise
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    try:
        problem = run(args.service, liveness=args.liveness, timeout_s=args.timeout, settings=settings)
    except ConfigurationError as exc:  # its NATS password file unreadable
        problem = exc.message
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    print(f"{args.service}: healthy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
