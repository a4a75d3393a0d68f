"""What a replica of each service must be let finish when it is stopped (a rolling restart, a scale-down):
the deployments' stop grace must cover it, and the orchestrator's kill timeout the stop grace."""

from __future__ import annotations

from switchyard.common.config import STOP_GRACE_S
from switchyard.executor.config import ExecutorSettings
from switchyard.gateway.config import GatewaySettings

DRAIN_S = 10.0  # after the stop grace: the gateway's 5 s wait for cut tasks' outcomes, hand-backs, teardown


def running_work_s(service: str) -> float:
    """The longest a piece of work already running may take: an executor's task (its deadline, or the
    bound its client's timeout gave it: up to the gateway's SWITCHYARD_REQUEST_TIMEOUT_MAX_S, which a task
    API task or a batch line gets, and the SDKs' 600 s default asks), a gateway's request (how long it
    waits for its task: as long); 0 for the rest (handlers of single events). A stream that has sent
    output may run longer (SWITCHYARD_STREAM_MAX_S, an hour): no stop grace is sized for it; a stop ends
    it with its face's error event (`executor_stopping`, `gateway_stopping`)."""
    longest = GatewaySettings().request_timeout_max_s
    if service == "executor":
        return max(ExecutorSettings().task_deadline_s, longest)
    if service == "gateway":
        return max(GatewaySettings().task_timeout_s, longest)
    return 0.0


def stop_grace_s(env: dict[str, str]) -> float:
    return float(env.get("SWITCHYARD_STOP_GRACE_S", STOP_GRACE_S))
