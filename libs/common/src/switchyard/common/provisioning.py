"""Who makes the bus's streams, KV buckets and object stores: a service itself, or the operator before it.

By default a service creates what it uses on its first start and brings it to its configuration on every
start (`bus.ensure_streams`, `kv.bucket`, `objects.open_bucket`, the gateway's and classifier's own
buckets): a deployment whose services may do everything on the bus (docker compose, Kubernetes, tests).

With SWITCHYARD_BUS_PROVISIONED=true (the embedded run, whose services connect as users that may not touch
the JetStream API's stream subjects) a trusted identity made every one of them beforehand from one list
(`switchyard up` as `operator`, `switchyard bus provision`), and a service only opens them: one that is
missing, or whose configuration differs from what the service expects (its settings changed since), is a
ConfigurationError naming it and what differs, instead of a service changing the bus's shape.
"""

from __future__ import annotations

from nats.js import JetStreamContext, api
from nats.js.errors import BadRequestError, NotFoundError, ServerError

from switchyard.common.config import CommonSettings
from switchyard.common.errors import ConfigurationError

NO_ROOM = 10047  # JetStream's error code: "insufficient storage resources available"
# What a service relies on in a stream's configuration; the rest (description, duplicate window) may differ.
CHECKED = ("subjects", "max_age", "max_bytes", "max_msgs_per_subject", "num_replicas", "discard", "storage")
KV_DUPLICATE_WINDOW_S = 120.0  # nats-py's for a KV bucket (less when its entries expire sooner)
PROVISION_HINT = (
    "the operator makes it before the services start (`switchyard up` does; elsewhere run "
    "`switchyard bus provision` as a NATS user that may, with this service's settings)"
)


class NotProvisioned(ConfigurationError):
    """A stream or bucket this service may only open is missing, or configured otherwise than it expects."""


def provisioned_only(settings: CommonSettings | None = None) -> bool:
    """True when this process only opens streams and buckets (SWITCHYARD_BUS_PROVISIONED)."""
    return (settings or CommonSettings()).bus_provisioned


def kv_config(
    bucket: str,
    *,
    history: int = 1,
    ttl_s: float | None = None,
    max_bytes: int | None = None,
    replicas: int = 1,
    description: str | None = None,
) -> api.StreamConfig:
    """The stream of the KV bucket `bucket` as nats-py's `create_key_value` makes it (file storage)."""
    window = KV_DUPLICATE_WINDOW_S if not ttl_s or ttl_s >= KV_DUPLICATE_WINDOW_S else ttl_s
    return api.StreamConfig(
        name=f"KV_{bucket}",
        description=description,
        subjects=[f"$KV.{bucket}.>"],
        allow_direct=True,
        allow_rollup_hdrs=True,
        allow_msg_ttl=True,
        deny_delete=True,
        discard=api.DiscardPolicy.NEW,
        duplicate_window=window,
        max_age=ttl_s,
        max_bytes=max_bytes,
        max_consumers=-1,
        max_msgs=-1,
        max_msgs_per_subject=history,
        num_replicas=replicas,
        storage=api.StorageType.FILE,
    )


def object_config(
    bucket: str,
    *,
    description: str,
    max_bytes: int,
    replicas: int,
    ttl_s: float | None = None,
) -> api.StreamConfig:
    """The stream of the object store `bucket` (`OBJ_<bucket>`): file storage, at most `max_bytes` in all,
    a put into a full bucket refused (discard new), objects expiring `ttl_s` after they were put (None:
    never), direct gets allowed (nats-py reads by them; objects.py by message gets, which show a message's
    stored headers)."""
    return api.StreamConfig(
        name=f"OBJ_{bucket}",
        description=description,
        subjects=[f"$O.{bucket}.C.>", f"$O.{bucket}.M.>"],
        max_age=ttl_s,
        max_bytes=max_bytes,
        storage=api.StorageType.FILE,
        num_replicas=replicas,
        discard=api.DiscardPolicy.NEW,
        allow_rollup_hdrs=True,
        allow_direct=True,
    )


async def ensure(js: JetStreamContext, config: api.StreamConfig, *, setting: str = "") -> None:
    """Creates the stream, or brings an existing one to `config` (for whoever may: the operator). JetStream
    without the room for its `max_bytes` is a ConfigurationError naming `setting`, the size's setting (none:
    the server's error)."""
    try:
        try:
            await js.add_stream(config)
        except BadRequestError:
            await js.update_stream(config)
    except ServerError as exc:
        if exc.err_code != NO_ROOM or not setting:
            raise
        raise no_room(describe(config.name or ""), config.max_bytes or 0, setting) from exc


async def prepare(js: JetStreamContext, config: api.StreamConfig, *, setting: str = "") -> None:
    """What a service does with a stream it uses at its start: `check` it when the operator made it
    (SWITCHYARD_BUS_PROVISIONED), else `ensure` it."""
    if provisioned_only():
        await check(js, config)
    else:
        await ensure(js, config, setting=setting)


def no_room(what: str, max_bytes: int, setting: str) -> ConfigurationError:
    """The error for a bucket (`what`: "the object store x", "the KV bucket y") that JetStream has no room
    to reserve, naming `setting`, the size's setting."""
    return ConfigurationError(
        f"JetStream has no room for {what} ({max_bytes / 2**30:.2f} GiB, {setting}): its file storage "
        "(nats-server's max_file_store; by default 75 % of the disk that was free when it started) is taken "
        f"by what other streams reserve. Lower {setting} or give the nats-server more room"
    )


async def check(js: JetStreamContext, config: api.StreamConfig) -> api.StreamInfo:
    """The stream `config` names, as it is: NotProvisioned when it is missing or differs from `config`."""
    assert config.name is not None
    try:
        info = await js.stream_info(config.name)
    except NotFoundError:
        raise NotProvisioned(f"{describe(config.name)} does not exist: {PROVISION_HINT}") from None
    found = differences(info.config, config)
    if found:
        raise NotProvisioned(
            f"{describe(config.name)} is configured otherwise than this service expects "
            f"({'; '.join(found)}): {PROVISION_HINT}"
        )
    return info


def differences(found: api.StreamConfig, wanted: api.StreamConfig) -> list[str]:
    """`field: found X, expected Y` for each checked field that differs."""
    out = []
    for field in CHECKED:
        have, want = _normal(field, getattr(found, field)), _normal(field, getattr(wanted, field))
        if have != want:
            out.append(f"{field}: {have}, expected {want}")
    return out


def _normal(field: str, value: object) -> object:
    if field == "subjects":
        return sorted(value or [])  # type: ignore[call-overload]
    if field == "num_replicas":
        return value or 1
    if field == "discard":
        return value or api.DiscardPolicy.OLD
    if field == "storage":
        return value or api.StorageType.FILE
    if value in (None, 0, -1, 0.0):  # no limit, however the server or client spells it
        return None
    if field == "max_age":
        return float(value)  # type: ignore[arg-type]
    return value


def describe(stream: str) -> str:
    """`the KV bucket x`, `the object store y` or `the stream z`, from its stream's name."""
    if stream.startswith("KV_"):
        return f"the KV bucket {stream[3:]}"
    if stream.startswith("OBJ_"):
        return f"the object store {stream[4:]}"
    return f"the stream {stream}"
