"""What the views need, built once by `create_app` and reached through the request's app."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncEngine

from switchyard.gateway.catalog import Catalog
from switchyard.gateway.config import GatewaySettings
from switchyard.gateway.tasks import TaskClient
from switchyard.gateway.tenants import KeyVerifier


@dataclass
class Gateway:
    settings: GatewaySettings
    engine: AsyncEngine
    verifier: KeyVerifier
    nc: Client
    tasks: TaskClient
    catalog: Catalog


def gateway_of(request: Request) -> Gateway:
    return request.app.state.gateway  # type: ignore[no-any-return]
