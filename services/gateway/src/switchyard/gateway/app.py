"""The gateway: HTTP in (OpenAI-compatible), tasks onto the bus, results back out."""

from __future__ import annotations

import logging
from typing import Any

import uvicorn
from fastapi import FastAPI
from faststream.nats.fastapi import NatsRouter

from switchyard.common import bus
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.logs import configure_logging
from switchyard.common.policy import load_policy
from switchyard.gateway import errors
from switchyard.gateway.catalog import Catalog
from switchyard.gateway.config import GatewaySettings
from switchyard.gateway.middleware import RequestContext
from switchyard.gateway.state import Gateway
from switchyard.gateway.tasks import TaskClient
from switchyard.gateway.tenants import KeyVerifier
from switchyard.gateway.views import chat, health, models

log = logging.getLogger(__name__)


def create_app(settings: GatewaySettings) -> FastAPI:
    policy = load_policy(settings.policy_path)
    nats = NatsRouter(
        settings.nats_url,
        name="switchyard-gateway",
        include_in_schema=False,
        schema_url=None,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
    )

    @nats.after_startup
    async def connected(app: FastAPI) -> dict[str, Any]:
        js = bus.jetstream(nats.broker)
        await bus.ensure_streams(js)
        engine = create_engine(settings.db_url())
        nc = bus.connection(nats.broker)
        app.state.gateway = Gateway(
            settings=settings,
            engine=engine,
            verifier=KeyVerifier(sessionmaker(engine), ttl_s=settings.auth_cache_ttl_s),
            nc=nc,
            tasks=TaskClient(nc, bus.EventPublisher(js, source="switchyard/gateway")),
            catalog=Catalog(policy, js, refresh_s=settings.providers_refresh_s),
        )
        log.info("gateway ready on http://%s:%d", settings.http_host, settings.http_port)
        return {}

    @nats.on_broker_shutdown
    async def closing(app: FastAPI) -> None:
        await app.state.gateway.engine.dispose()

    app = FastAPI(
        title="Switchyard",
        version="0.1.0",
        description="OpenAI-compatible gateway: routes each task to the right model and records every step.",
        lifespan=nats.lifespan_context,
    )
    app.include_router(nats)
    for view in (chat, models, health):
        app.include_router(view.router)
    errors.install(app)
    app.add_middleware(RequestContext)
    return app


def main() -> None:
    settings = GatewaySettings()
    configure_logging(service="gateway", level=settings.log_level, json=settings.log_json)
    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
    )
