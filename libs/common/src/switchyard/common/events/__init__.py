"""Versioned event payloads, one module per bounded context, and the registry of CloudEvents types."""

from switchyard.common.events.admin import AdminActionRecorded
from switchyard.common.events.billing import BudgetAlert, UsageRecorded
from switchyard.common.events.feedback import TaskFeedback
from switchyard.common.events.gateway import AuthFailureRecorded, GuardrailTriggered, TaskCancelled
from switchyard.common.events.logprobs import TokenLogprob, TopLogprob
from switchyard.common.events.registry import EVENT_TYPES, event_model, event_type_of
from switchyard.common.events.results import (
    CacheHit,
    ChargedCall,
    Choice,
    EmbeddingResult,
    ProviderCallRecorded,
    TaskCompleted,
    TaskFailed,
    TaskTimedOut,
)
from switchyard.common.events.tasks import (
    ChatMessage,
    ChatRequest,
    Classification,
    EmbeddingRequest,
    FunctionCall,
    FunctionSpec,
    Reasoning,
    RouteCandidate,
    RoutingDecision,
    TaskBudget,
    TaskClassified,
    TaskRouted,
    TaskSubmitted,
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
    "Choice",
    "Classification",
    "EmbeddingRequest",
    "EmbeddingResult",
    "FunctionCall",
    "FunctionSpec",
    "GuardrailTriggered",
    "ProviderCallRecorded",
    "Reasoning",
    "RouteCandidate",
    "RoutingDecision",
    "TaskBudget",
    "TaskCancelled",
    "TaskClassified",
    "TaskCompleted",
    "TaskFailed",
    "TaskFeedback",
    "TaskRouted",
    "TaskSubmitted",
    "TaskTimedOut",
    "ThinkingBlock",
    "TokenLogprob",
    "ToolCall",
    "ToolSpec",
    "TopLogprob",
    "Usage",
    "UsageRecorded",
    "event_model",
    "event_type_of",
]
