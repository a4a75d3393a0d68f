"""Which RPC requests are answered and which core messages are dropped (bus_guard.py); the marks
themselves are read off a real server in tests/integration/common/test_bus_guard.py."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from pydantic import SecretStr

from switchyard.cli.bus_permissions import GRANTS
from switchyard.common import bus_guard, subjects
from switchyard.common.bus_auth import NatsCredentials


@dataclass
class Message:
    reply: str = ""
    headers: dict[str, str] | None = None
    subject: str = subjects.BILLING_RPC_WEBHOOK_CREATE


BILLING = NatsCredentials(user="billing", password=SecretStr("x"))
SHARED = NatsCredentials(user="switchyard", password=SecretStr("x"))  # docker compose, Kubernetes


@pytest.mark.parametrize(
    ("reply", "me", "answered"),
    [
        ("_INBOX_gateway.abc.1", BILLING, True),
        ("_INBOX_operator.abc.1", BILLING, True),
        ("_INBOX_executor.abc.1", BILLING, False),
        ("_INBOX_gatewayx.abc.1", BILLING, False),  # a prefix of the name is not the user
        ("_INBOX.abc.1", BILLING, True),  # an operator's tool without a prefix of its own (`nats req`)
        ("$JS.ACK.KV_x.c.1.1.1.1.0", BILLING, False),
        ("", BILLING, False),
        ("_INBOX_switchyard.abc.1", SHARED, True),  # one user for every service: its own inbox
        ("_INBOX.abc.1", None, True),  # a bus with no users: any inbox
        ("_INBOX_anyone.abc.1", None, True),
        ("$JS.ACK.KV_x.c.1.1.1.1.0", None, False),
        ("", None, False),
    ],
)
def test_an_rpc_is_answered_only_on_an_allowed_callers_inbox(
    reply: str, me: NatsCredentials | None, answered: bool
) -> None:
    allowed = bus_guard.rpc_reply_prefixes(subjects.BILLING_RPC_PREFIX, me)
    assert bus_guard.refused_rpc(Message(reply=reply), allowed, subscription="s") is not answered


def test_the_rpc_callers_are_the_users_allowed_to_request_them() -> None:
    for prefix, callers in bus_guard.RPC_CALLERS.items():
        granted = {user for user, grant in GRANTS.items() if f"{prefix}.>" in grant.requests}
        assert granted == set(callers), prefix


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (Message(reply="$JS.ACK.KV_x.c.1.1.1.1.0"), "jetstream_delivery"),
        (Message(reply="$JS.FC.KV_x.c.1"), "jetstream_delivery"),
        (Message(headers={"Nats-Stream": "KV_x", "Nats-Subject": "$KV.x.k"}), "stream_read_reply"),
        (Message(headers={"Status": "100", "Description": "Idle Heartbeat"}), "status_message"),
        (Message(), None),
        (Message(reply="_INBOX_gateway.abc.1", headers={"Nats-Msg-Id": "e1"}), None),  # a JetStream publish
    ],
)
def test_what_the_server_sends_for_a_client_is_dropped(message: Message, reason: str | None) -> None:
    assert bus_guard.server_sent(message) == reason
    before = bus_guard.REFUSED.labels("t", reason or "-")._value.get()
    assert bus_guard.refused(message, subscription="t") is (reason is not None)
    assert bus_guard.REFUSED.labels("t", reason or "-")._value.get() == before + (reason is not None)
