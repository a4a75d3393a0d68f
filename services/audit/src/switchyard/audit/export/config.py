"""Settings of the SIEM exporter (`python -m switchyard.audit.export`), all `SWITCHYARD_SIEM_*`."""

from __future__ import annotations

import socket
from pathlib import Path

from pydantic import Field, SecretStr

from switchyard.audit.export.formats import DEFAULT_MAX_BYTES
from switchyard.common.config import CommonSettings


class ExportSettings(CommonSettings):
    siem_url: str | None = Field(
        default=None,
        description="tcp://host:port, tls://host:port (syslog, octet-counted), https://host:port (Splunk "
        "HEC), file:///path (JSON Lines)",
    )
    siem_format: str = Field(default="cef", description="cef, leef, ocsf or ecs")
    siem_name: str = Field(default="siem", description="the exporter's name: its stored position is per name")
    siem_batch: int = Field(default=500, ge=1, description="entries read and sent per round")
    siem_poll_s: float = Field(
        default=0.5, gt=0, description="how often an idle exporter looks for new entries"
    )
    siem_max_frame_bytes: int = Field(default=DEFAULT_MAX_BYTES, ge=2048, description="largest message sent")
    siem_settle_s: float = Field(
        default=2.0, ge=0, description="syslog: an entry counts as delivered this long after it was written"
    )
    siem_hostname: str = Field(default_factory=socket.gethostname, description="syslog HOSTNAME / HEC host")
    siem_sd_id: str = Field(default="switchyard@32473", description="syslog structured-data id (name@PEN)")
    siem_tls_ca_file: Path | None = Field(
        default=None, description="CA bundle that signed the receiver's cert"
    )
    siem_tls_cert_file: Path | None = Field(default=None, description="client certificate (mutual TLS)")
    siem_tls_key_file: Path | None = Field(default=None, description="client key (mutual TLS)")
    siem_tls_server_name: str | None = Field(default=None, description="expected name in the receiver's cert")
    siem_hec_token: SecretStr | None = Field(default=None, description="Splunk HEC token")
    siem_hec_ack_timeout_s: float = Field(default=60.0, gt=0, description="resend a batch not acked by then")
