"""What README "Trust" says of JetStream in an account of its own, on the nats-server the project ships
(2.15): a request to the JetStream API answered to `$KV.<bucket>.<key>` is stored in the bucket when its
user is in the JetStream account, and not when its user is in another account that imports the API and
reaches the streams' subjects (by a service import of `$KV.>`, or the JetStream account importing `$KV.>`
as a stream): the answer crosses back as a service response, published on `_R_...` in the JetStream
account. Switchyard does not run that layout; this test keeps the README's claim about it true."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import pytest
from nats.js.errors import KeyNotFoundError

from switchyard.cli.processes import free_port, nats_server_binary

pytestmark = pytest.mark.integration

API = '{service: "$JS.API.>", response_type: stream}'
LAYOUTS = {
    "service_import": f"""
  JS: {{ jetstream: enabled, users: [{{user: js, password: js}}],
        exports: [{API}, {{service: "$KV.>"}}] }}
  U: {{ users: [{{user: u, password: u}}],
       imports: [{{service: {{account: JS, subject: "$JS.API.>"}}}},
                 {{service: {{account: JS, subject: "$KV.>"}}}}] }}
""",
    "stream_import": f"""
  JS: {{ jetstream: enabled, users: [{{user: js, password: js}}],
        exports: [{API}], imports: [{{stream: {{account: U, subject: "$KV.>"}}}}] }}
  U: {{ users: [{{user: u, password: u}}], exports: [{{stream: "$KV.>"}}],
       imports: [{{service: {{account: JS, subject: "$JS.API.>"}}}}] }}
""",
}


@pytest.fixture(params=list(LAYOUTS))
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    port, monitor = free_port(), free_port()
    config = tmp_path / "nats.conf"
    config.write_text(
        f'listen: "127.0.0.1:{port}"\nhttp: "127.0.0.1:{monitor}"\n'
        f'jetstream {{ store_dir: "{tmp_path / "js"}" }}\naccounts {{{LAYOUTS[request.param]}}}\n'
    )
    with open(tmp_path / "nats.log", "ab") as log:
        proc = subprocess.Popen(
            [nats_server_binary(), "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, (tmp_path / "nats.log").read_text()[-1500:]
            try:
                if httpx.get(f"http://127.0.0.1:{monitor}/healthz?js-enabled-only=true").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_an_api_answer_to_a_kv_subject_is_stored_only_within_the_jetstream_account(server: str) -> None:
    owner = await nats.connect(f"nats://js:js@{server}")
    user = await nats.connect(f"nats://u:u@{server}")
    try:
        js = owner.jetstream()
        own = await js.create_key_value(bucket="own", direct=True)
        target = await js.create_key_value(bucket="target", direct=True)
        await own.put("k", b"bytes of my own")
        await user.publish("$KV.own.put", b"a user's put")  # the users reach the streams
        assert (
            await user.request("$JS.API.DIRECT.GET.KV_own.$KV.own.k", b"", timeout=5)
        ).data == b"bytes of my own"
        for client, prefix in ((user, "user"), (owner, "owner")):
            await client.publish(
                "$JS.API.DIRECT.GET.KV_own.$KV.own.k", b"", reply=f"$KV.target.{prefix}-copy"
            )
            await client.publish("$JS.API.INFO", b"", reply=f"$KV.target.{prefix}-info")
            await client.flush()
        await asyncio.sleep(0.5)
        assert (await own.get("put")).value == b"a user's put"
        assert (await target.get("owner-copy")).value == b"bytes of my own"  # within the account: stored
        assert (await target.get("owner-info")).value.startswith(b'{"type":"io.nats.jetstream.api.v1.')
        for key in ("user-copy", "user-info"):
            with pytest.raises(KeyNotFoundError):
                await target.get(key)
    finally:
        await user.close()
        await owner.close()
