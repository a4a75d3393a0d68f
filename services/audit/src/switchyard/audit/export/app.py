"""The SIEM exporter process: one destination, one stored position, until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal

import uvloop
from pydantic import ValidationError
from pydantic_settings import SettingsError

from switchyard.audit.export.config import ExportSettings
from switchyard.audit.export.destinations import destination
from switchyard.audit.export.exporter import ExportJob, run_export
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.errors import ConfigurationError
from switchyard.common.logs import configure_logging
from switchyard.common.service import exit_on_bad_settings

log = logging.getLogger(__name__)


async def serve(settings: ExportSettings) -> None:
    if not settings.siem_url:
        raise ConfigurationError("SWITCHYARD_SIEM_URL is required (tcp://, tls://, https:// or file://)")
    encoder, open_sink = destination(settings.siem_url, settings.siem_format, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    engine = create_engine(settings.db_url(), **settings.db_options())
    job = ExportJob(
        encoder=encoder,
        open_sink=open_sink,
        name=settings.siem_name,
        batch=settings.siem_batch,
        poll_s=settings.siem_poll_s,
    )
    log.info(
        "exporting the ledger to %s as %s (position %r)",
        settings.siem_url,
        settings.siem_format,
        settings.siem_name,
    )
    try:
        progress = await run_export(sessionmaker(engine), job, stop=stop)
        log.info("exporter stopped at seq %d", progress.position)
    finally:
        await engine.dispose()


def main() -> None:
    try:
        settings = ExportSettings()
    except (ValidationError, SettingsError) as exc:
        exit_on_bad_settings("siem-exporter", exc)
    configure_logging(service="siem-export", level=settings.log_level, json=settings.log_json)
    uvloop.run(serve(settings))
