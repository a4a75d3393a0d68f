"""Who may publish on each subject of the events stream: what the subject an event arrived on says of its
publisher, whatever its payload claims (the ledger records it: audit/provenance.py).

The NATS permissions `switchyard up`, `switchyard bus credentials`, docker compose and Kubernetes give
(cli/bus_permissions.py) let each service publish only its own events, a tenant-scoped integrator only its
tenants' scoped subjects (`switchyard.task.submitted.<token>`...) and an all-tenant integrator only the bare
ones; `operator` (the CLI: `dlq replay` sends an event again on its subject) may publish anything. This
table is those grants, besides `operator`; tests/unit/common/test_publishers.py keeps it equal to them.
"""

from __future__ import annotations

from switchyard.common import subjects as s

# A user made with `switchyard bus credentials DIR --integrator NAME --all-tenants`: any tenant it names.
ALL_TENANTS = "integrator:all"
OPERATOR = "operator"
# A service publishes a task's result (an answer, or a failure it found) on `switchyard.result.<token>.<task
# id>` (`result.<task id>` during a rolling upgrade from a release before tenant tokens).
_RESULTS = ("classifier", "executor", "gateway", "router")

# Subject (a NATS pattern, as granted) -> the services that may publish on it.
SERVICE_EVENTS: dict[str, tuple[str, ...]] = {
    s.TASK_SUBMITTED: ("gateway",),
    s.TASK_CANCELLED: ("gateway",),
    s.TASK_FEEDBACK: ("gateway",),
    s.TASK_TIMED_OUT: ("gateway",),
    s.ADMIN_ACTION: ("gateway",),
    s.SECURITY_GUARDRAIL: ("gateway",),
    s.SECURITY_AUTH_FAILURE: ("gateway",),
    s.TASK_CLASSIFIED: ("classifier",),
    s.TASK_ROUTED: ("router",),
    s.PROVIDER_CALL: ("executor",),
    s.USAGE_RECORDED: ("billing",),
    s.BUDGET_ALERT: ("billing",),
    f"{s.RESULT_PREFIX}.*.*": _RESULTS,
    f"{s.RESULT_PREFIX}.*": _RESULTS,
}


_SPLIT = [(pattern.split("."), names) for pattern, names in SERVICE_EVENTS.items()]


def scoped_integrator(token: str) -> str:
    """A user scoped to the tenant whose subject token is `token` (`--integrator NAME --tenant T`): the
    only users besides `operator` that may publish on `switchyard.task.submitted.<token>`..."""
    return f"integrator:{token}"


def publishers(subject: str) -> tuple[str, ...]:
    """Who may have published an event stored on `subject`: `service:<name>`, `integrator:<token>` (a
    tenant-scoped integrator of that token's tenant), `integrator:all`; `operator` when no one else may."""
    token = s.scoped_token(subject)
    if token is not None:
        return (scoped_integrator(token),)
    tokens = subject.split(".")
    found = [f"service:{name}" for pattern, names in _SPLIT if _matches(pattern, tokens) for name in names]
    if subject in s.SCOPED:
        found.append(ALL_TENANTS)
    return tuple(dict.fromkeys(found)) or (OPERATOR,)


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: `*` one token, `>` one or more at the end."""
    return _matches(pattern.split("."), subject.split("."))


def _matches(want: list[str], have: list[str]) -> bool:
    for i, part in enumerate(want):
        if part == ">":
            return len(have) > i
        if i >= len(have) or (part != "*" and part != have[i]):
            return False
    return len(have) == len(want)
