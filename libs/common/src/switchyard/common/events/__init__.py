"""Versioned event payloads, one module per bounded context, and the registry of CloudEvents types."""

from switchyard.common.events.admin import AdminActionRecorded
from switchyard.common.events.billing import BudgetAlert, UsageRecorded
from switchyard.common.events.feedback import TaskFeedback
from switchyard.common.events.gateway import AuthFailureRecorded, GuardrailTriggered, TaskCancelled
from switchyard.common.events.registry import EVENT_TYPES, event_model, event_type_of
from switchyard.common.events.tasks import (
    CacheHit,
    ChargedCall,
    ChatMessage,
    ChatRequest,
    Classification,
    FunctionCall,
    FunctionSpec,
    ProviderCallRecorded,
    Reasoning,
    RouteCandidate,
    RoutingDecision,
    TaskClassified,
    TaskCompleted,
    TaskFailed,
    TaskRouted,
    TaskSubmitted,
    TaskTimedOut,
    ThinkingBlock,
    ToolCall,
    ToolSpec,
    Usage,
)

__all__ = [
    "EVENT_TYPES",
    "AdminActionRecorded",
    "AuthFailureRecorded",
    "BudgetAlert",
    "CacheHit",
    "ChargedCall",
    "ChatMessage",
    "ChatRequest",
    "Classification",
    "FunctionCall",
    "FunctionSpec",
    "GuardrailTriggered",
    "ProviderCallRecorded",
    "Reasoning",
    "RouteCandidate",
    "RoutingDecision",
    "TaskCancelled",
    "TaskClassified",
    "TaskCompleted",
    "TaskFailed",
    "TaskFeedback",
    "TaskRouted",
    "TaskSubmitted",
    "TaskTimedOut",
    "ThinkingBlock",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "UsageRecorded",
    "event_model",
    "event_type_of",
]
