"""A real rsyslog (Debian's) on loopback for tests: octet-counted TCP or TLS in, one JSON object per message
out (an omfile JSON template over what rsyslog parsed, structured data included via mmpstrucdata)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from switchyard.cli.processes import free_port, port_open

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"

TEMPLATE = """
template(name="ledgerjson" type="list") {
  constant(value="{")
  property(outname="msg" name="msg" format="jsonf") constant(value=",")
  property(outname="msgid" name="msgid" format="jsonf") constant(value=",")
  property(outname="hostname" name="hostname" format="jsonf") constant(value=",")
  property(outname="appname" name="app-name" format="jsonf") constant(value=",")
  property(outname="pri" name="pri" format="jsonf") constant(value=",")
  property(outname="timestamp" name="timereported" dateFormat="rfc3339" format="jsonf") constant(value=",")
  property(outname="sd" name="$!rfc5424-sd" format="jsonf")
  constant(value="}\\n")
}
"""


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def make_tls_files(folder: Path, *, host: str = "127.0.0.1") -> TlsFiles:
    """A throwaway CA and a server certificate for `host` (IP and DNS SANs), ECDSA P-256."""
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "switchyard test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(host))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return files


class Rsyslog:
    """rsyslogd in the foreground with its own config; `stop()` sends SIGTERM to its PID (it flushes)."""

    def __init__(self, folder: Path, *, tls: TlsFiles | None = None, port: int | None = None) -> None:
        self.folder = folder
        self.tls = tls
        self.port = port or free_port()
        self.output = folder / "received.jsonl"
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return Path(RSYSLOGD).exists()

    def config(self) -> str:
        work = self.folder / "work"
        work.mkdir(parents=True, exist_ok=True)
        lines = [
            f'global(workDirectory="{work}" maxMessageSize="64k" '
            'parser.escapeControlCharactersOnReceive="off")',
        ]
        if self.tls is not None:
            lines.append(
                f'global(defaultNetstreamDriver="gtls" defaultNetstreamDriverCAFile="{self.tls.ca}" '
                f'defaultNetstreamDriverCertFile="{self.tls.cert}" '
                f'defaultNetstreamDriverKeyFile="{self.tls.key}")'
            )
            lines.append(
                'module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" '
                'streamDriver.authMode="anon")'
            )
        else:
            lines.append('module(load="imtcp")')
        lines += [
            'module(load="mmpstrucdata")',
            TEMPLATE,
            f'input(type="imtcp" port="{self.port}" address="127.0.0.1" supportOctetCountedFraming="on" '
            'ruleset="ledger")',
            'ruleset(name="ledger") {',
            '  action(type="mmpstrucdata" sd_name.lowercase="off")',
            f'  action(type="omfile" file="{self.output}" template="ledgerjson" flushOnTXEnd="on" '
            'asyncWriting="off")',
            "}",
        ]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 15.0) -> Rsyslog:
        self.folder.mkdir(parents=True, exist_ok=True)
        conf = self.folder / "rsyslog.conf"
        conf.write_text(self.config())
        log = open(self.folder / "rsyslogd.log", "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [RSYSLOGD, "-n", "-C", "-f", str(conf), "-i", str(self.folder / "rsyslogd.pid")],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"rsyslogd exited: {(self.folder / 'rsyslogd.log').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"rsyslogd not listening on {self.port}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def records(self) -> list[dict[str, Any]]:
        if not self.output.exists():
            return []
        out = []
        # rsyslog may be writing the last line as we read: only whole lines (a partial one is whole on the
        # next read) count.
        written, _, _ = self.output.read_bytes().rpartition(b"\n")
        for line in written.splitlines():
            record = orjson.loads(line)
            if isinstance(record.get("sd"), str) and record["sd"]:
                record["sd"] = orjson.loads(record["sd"])
            out.append(record)
        return out
