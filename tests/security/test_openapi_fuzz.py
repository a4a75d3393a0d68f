"""Schemathesis against the OpenAPI document the running gateway serves: for every operation, generated
requests (valid and invalid) with an admin key; no 5xx (a provider's failure reported as 502/503/504 in the
error model excepted), and every response conforms to the document. Bounded here (`make fuzz`: 25x)."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import checks

from tests.integration.gateway.harness import auth
from tests.security.conftest import Tenants

pytestmark = pytest.mark.e2e
EXAMPLES = 20 * (5 if os.environ.get("SWITCHYARD_LONG_TESTS") == "1" else 1)


def _fuzz(operation: Any, base: str, headers: dict[str, str], tried: list[int], found: list[str]) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        case = data.draw(operation.as_strategy())
        response = case.call(base_url=base, headers=headers, timeout=30)
        tried.append(response.status_code)
        if response.status_code in (502, 503, 504) and "error" in response.text:
            return  # a provider's failure, reported in the error model
        try:
            case.validate_response(
                response, checks=[checks.not_a_server_error, checks.response_schema_conformance]
            )
        except BaseException as exc:  # a FailureGroup: kept, so that every operation is tried
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            found.append(_first_problem(str(exc) + "".join(map(str, getattr(exc, "exceptions", [])))))

    run()


def _first_problem(text: str) -> str:
    lines = [x.strip(" |") for x in text.splitlines()]
    found = [x for x in lines if "Error:" in x or " is not " in x or "Server error" in x]
    return "; ".join(dict.fromkeys(found))[:400] or text[:400]


def test_every_operation_answers_without_5xx_and_as_documented(tenants: Tenants) -> None:
    base = tenants.stack.base_url
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    headers = auth(tenants.attacker.keys["admin"])
    failures: dict[str, str] = {}
    tried: list[int] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        name = f"{operation.method.upper()} {operation.path}"
        found: list[str] = []
        _fuzz(operation, base, headers, tried, found)
        if found:
            failures[name] = "; ".join(sorted(set(found)))[:500]
    print(f"\nschemathesis: {len(tried)} requests on {len(operations)} operations, statuses {Counter(tried)}")
    assert not failures, failures
