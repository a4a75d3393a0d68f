"""The HTTP routes the docs show are the gateway's, and each public route of the gateway is documented."""

from __future__ import annotations

import pytest

from tests.unit.docs import code_facts, usage

pytestmark = pytest.mark.unit

# Documented `METHOD /path`s that are deliberately no route of the gateway:
NOT_GATEWAY_ROUTES = {
    # the error table's examples of a request the gateway refuses: a trailing slash is no route (404
    # `not_found`), and a route asked with a method it does not take is 405 `method_not_allowed`
    ("POST", "/v1/tasks/"),
    ("GET", "/v1/chat/completions"),
}

# Paths written without a method that are deliberately no route of the gateway:
NOT_GATEWAY_PATHS = {
    "/v1/traces",  # the OpenTelemetry collector's OTLP/HTTP path (docs/operations/README.md, Traces)
}


def _route_of(method: str, path: str) -> code_facts.Route | None:
    routes = code_facts.gateway_routes()
    # a literal path first: `POST /v1/responses/compact` is not `POST /v1/responses/{name}` when both exist
    exact = [r for r in routes if r.method == method and r.path == path]
    matched = exact or [r for r in routes if r.method == method and r.matches(path)]
    return matched[0] if matched else None


def test_every_route_the_docs_show_exists() -> None:
    wrong = [
        f"{method} {path}: {where}"
        for method, path, where in usage.route_mentions()
        if (method, path) not in NOT_GATEWAY_ROUTES and _route_of(method, path) is None
    ]
    assert not wrong, "routes the docs show that the gateway has not:\n" + "\n".join(wrong)


def test_every_path_the_docs_write_is_a_route_or_a_prefix_of_routes() -> None:
    routes = code_facts.gateway_routes()
    wrong = [
        str(m)
        for m in usage.path_mentions()
        if m.name not in NOT_GATEWAY_PATHS
        and not any(r.matches(m.name) or r.path.startswith(f"{m.name}/") for r in routes)
    ]
    assert not wrong, "paths the docs write that are no route of the gateway:\n" + "\n".join(wrong)


def test_the_docs_and_the_code_name_the_same_switchyard_headers() -> None:
    code = code_facts.switchyard_headers()
    unknown = sorted({str(m) for m in usage.header_mentions() if m.name not in code})
    undocumented = sorted(code - {m.name for m in usage.header_mentions()})
    assert not unknown, "headers the docs name that the code never writes or reads:\n" + "\n".join(unknown)
    assert not undocumented, "headers of the code no doc names:\n" + "\n".join(undocumented)


def test_every_error_code_of_the_error_table_is_in_the_code() -> None:
    codes = usage.error_codes()
    unknown = [str(m) for m in codes if m.name not in code_facts.string_constants()]
    assert len(codes) > 50, "the error table was not read"
    assert not unknown, "error codes the README lists that the code never writes:\n" + "\n".join(unknown)


def test_every_allowed_exception_is_still_in_the_docs() -> None:
    written = {m.name for m in usage.path_mentions()}
    assert written >= NOT_GATEWAY_PATHS, "a stale entry of NOT_GATEWAY_PATHS"
    shown = {(method, path) for method, path, _ in usage.route_mentions()}
    assert shown >= NOT_GATEWAY_ROUTES, "a stale entry of NOT_GATEWAY_ROUTES"


def test_every_public_route_is_documented() -> None:
    documented = {_route_of(method, path) for method, path, _ in usage.route_mentions()}
    missing = [
        f"{r.method} {r.path}"
        for r in code_facts.gateway_routes()
        if r.public and r.method != "WEBSOCKET" and r not in documented
    ]
    assert not missing, "routes of the gateway no doc shows:\n" + "\n".join(missing)


def test_a_documented_path_matches_its_route_template() -> None:
    files = code_facts.Route("GET", "/v1/files/{file_id}/content", True)
    assert files.matches("/v1/files/{id}/content") and files.matches("/v1/files/file-abc/content")
    assert not files.matches("/v1/files/{id}") and not files.matches("/v1/files/a/b/content")
    model = code_facts.Route("GET", "/v1/models/{model:path}", True)
    assert model.matches("/v1/models/openai/gpt-6-mini")
