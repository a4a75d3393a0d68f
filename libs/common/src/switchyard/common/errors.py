"""The error hierarchy shared by every service.

`retryable` decides redelivery on the bus and fallback in the executor; `code` is the stable machine
name clients see (HTTP error `type`, dead-letter `reason`).
"""

from __future__ import annotations


class SwitchyardError(Exception):
    code = "internal_error"
    retryable = False

    def __init__(self, message: str, *, code: str | None = None, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable


class InvalidEvent(SwitchyardError):
    """A message on the bus that is not a valid event of the expected type: never retried."""

    code = "invalid_event"


class EventTooLarge(InvalidEvent):
    """An event that would be a message over the bus's `max_payload` with its headers: never sent (nats-py
    checks the payload alone; the server closes the connection of a client that sends more, and nats-py
    does not reconnect after that). Another system's task near the limit grows past it on its way
    (the classifier's and the router's events carry it): dead-lettered and answered with this code."""

    code = "event_too_large"


class TenantMismatch(InvalidEvent):
    """An event on a tenant-scoped subject (`switchyard.task.submitted.<token>`...) whose payload names a
    tenant of another token: a system scoped to some tenants wrote another's id. Never acted on; a
    submission is answered on the result subject of the subject's tenant (`token`), not the named one's."""

    code = "tenant_mismatch"

    def __init__(self, message: str, *, token: str) -> None:
        super().__init__(message)
        self.token = token


class ConfigurationError(SwitchyardError):
    code = "configuration_error"


class NoProviderAvailable(SwitchyardError):
    code = "no_provider_available"


class ProviderError(SwitchyardError):
    """A provider call failed; `kind` is one of the executor's error taxonomy."""

    code = "provider_error"

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        retryable: bool,
        retry_after: float | None = None,
        sent: bool = True,
        cut_short: bool = False,
        abandoned: bool = False,
    ) -> None:
        super().__init__(message, code=f"provider_{kind}", retryable=retryable)
        self.kind = kind
        self.retry_after = retry_after
        # False: refused before anything was sent (the model is known to refuse the call): it says
        # nothing about the provider's health.
        self.sent = sent
        # True: a timeout at a bound its task's deadline made shorter than the executor gives a call on its
        # own (a client that waits less, or a deadline nearly spent): nothing about the provider either.
        self.cut_short = cut_short
        # True: a `timeout` of ours after the request went out (no answer read in time, not the provider's
        # own error answer nor a connection never made): the provider had the prompt and charged it.
        self.abandoned = abandoned


class TransientError(SwitchyardError):
    """A dependency (database, bus) is briefly unavailable: redeliver later."""

    code = "transient_error"
    retryable = True
