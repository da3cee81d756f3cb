"""The gateway over TLS with the node's certificate (``[tls]``), as the ingest service has it."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from coordinator.deploy.certs import init_certs

from .stack import TOKEN, Node, Server

pytestmark = pytest.mark.slow


def test_tls_serves_clients_that_trust_the_ca_and_only_them(workdir: Path, stub: Server) -> None:
    # Prepare
    certs = init_certs(workdir / "certs")
    node = Node(workdir / "tls-node", stub.url,
                tls={"cert_file": str(certs.server_cert), "key_file": str(certs.server_key)})
    gateway = node.gateway(verify=str(certs.ca_cert)).start()
    try:
        # Execute
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=TOKEN, max_retries=0,
                               http_client=httpx.Client(verify=str(certs.ca_cert)))
        answer = client.chat.completions.create(
            model="hermes-fed", messages=[{"role": "user", "content": "over tls"}])

        # Assert
        assert gateway.url.startswith("https://")
        assert answer.choices[0].message.content == "echo: over tls"
        with pytest.raises(httpx.ConnectError):
            httpx.get(gateway.url + "/health")  # the system trust store does not know our CA
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(gateway.url.replace("https://", "http://") + "/health")
    finally:
        gateway.stop()
