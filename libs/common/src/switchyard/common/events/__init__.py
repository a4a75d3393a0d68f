"""Versioned event payloads, one module per bounded context, and the registry of CloudEvents types."""

from switchyard.common.events.admin import AdminActionRecorded
from switchyard.common.events.billing import UsageRecorded
from switchyard.common.events.gateway import TaskCancelled
from switchyard.common.events.registry import EVENT_TYPES, event_model, event_type_of
from switchyard.common.events.tasks import (
    ChatMessage,
    ChatRequest,
    Classification,
    ProviderCallRecorded,
    RouteCandidate,
    RoutingDecision,
    TaskClassified,
    TaskCompleted,
    TaskFailed,
    TaskRouted,
    TaskSubmitted,
    TaskTimedOut,
    Usage,
)

__all__ = [
    "EVENT_TYPES",
    "AdminActionRecorded",
    "ChatMessage",
    "ChatRequest",
    "Classification",
    "ProviderCallRecorded",
    "RouteCandidate",
    "RoutingDecision",
    "TaskCancelled",
    "TaskClassified",
    "TaskCompleted",
    "TaskFailed",
    "TaskRouted",
    "TaskSubmitted",
    "TaskTimedOut",
    "Usage",
    "UsageRecorded",
    "event_model",
    "event_type_of",
]
