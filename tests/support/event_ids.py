"""The event id secret tests give the services they start, and the ids those services derive with it."""

from __future__ import annotations

from switchyard.common import ids

SECRET = "tests-event-id-secret-3f9c0a7d21b84e65"
KEY = ids.EventIdKey(SECRET.encode())
ENV = {"SWITCHYARD_EVENT_ID_SECRET": SECRET}


def derived(cause_id: str, step: str, *, tenant_id: str) -> str:
    """The id a service given `ENV` derives for the event `step` of `cause_id` of `tenant_id`."""
    return KEY.event_id(cause_id, step, tenant_id=tenant_id)


def with_secret(env: dict[str, str]) -> dict[str, str]:
    """`env` for a service a test starts: the deployment's secret is the tests' one unless `env` names its
    own (a test of the secret itself), as every service of a deployment is given one."""
    if "SWITCHYARD_EVENT_ID_SECRET" in env or "SWITCHYARD_EVENT_ID_SECRET_FILE" in env:
        return env
    return {**ENV, **env}
