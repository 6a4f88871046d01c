"""A real asyncua server for the OPC UA connector tests, in this event loop.

The address space is a small CNC machine under ``ns=2;s=Cnc.*``: numeric, boolean and string
variables, writable and read-only ones. The server can be stopped and started again on the
same port, and can require Basic256Sha256 with user/password.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from asyncua import Server, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.user_managers import UserManager
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.conftest import free_port

NS_URI = "urn:yugong:test:cnc"

#: name -> (initial value, variant type, writable)
VARIABLES: dict[str, tuple[Any, ua.VariantType, bool]] = {
    "Spindle.Speed": (1200.0, ua.VariantType.Double, True),
    "Spindle.Load": (10.0, ua.VariantType.Double, False),
    "Running": (True, ua.VariantType.Boolean, True),
    "Program": ("O1000", ua.VariantType.String, True),
    "PartCount": (7, ua.VariantType.Int32, True),
    "Serial": ("SN-42", ua.VariantType.String, False),
    "Temperature": (21.5, ua.VariantType.Float, False),
}


def node_id(name: str) -> str:
    return f"ns=2;s=Cnc.{name}"


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path
    uri: str


async def make_cert(folder: Path, name: str, uri: str, *, server: bool) -> CertPair:
    cert, key = folder / f"{name}.der", folder / f"{name}.pem"
    usage = [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
    await setup_self_signed_certificate(
        key, cert, uri, "127.0.0.1", usage, {"commonName": name, "organizationName": "Yugong"}
    )
    return CertPair(cert, key, uri)


class PasswordUsers(UserManager):
    """Username/password check; a wrong password is refused (no user)."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        if username is None or self.users.get(username) != password:
            return None
        return User(role=UserRole.User, name=username)


class OpcUaTestServer:
    def __init__(
        self,
        port: int,
        *,
        cert: CertPair | None = None,
        users: dict[str, str] | None = None,
    ) -> None:
        self.port = port
        self.cert = cert
        self.users = users
        self.endpoint = f"opc.tcp://127.0.0.1:{port}/yugong/"
        self.values: dict[str, Any] = {k: v for k, (v, _, _) in VARIABLES.items()}
        self._server: Server | None = None
        self._nodes: dict[str, Any] = {}

    async def start(self) -> None:
        server = Server(user_manager=PasswordUsers(self.users) if self.users else None)
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("Yugong test CNC")
        if self.cert is not None:
            await server.set_application_uri(self.cert.uri)
            await server.load_certificate(str(self.cert.cert))
            await server.load_private_key(str(self.cert.key))
            server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
        if self.users:
            server.set_security_IDs(["Username"])
        idx = await server.register_namespace(NS_URI)
        assert idx == 2
        cnc = await server.nodes.objects.add_object(
            ua.NodeId.from_string(f"ns={idx};s=Cnc"), f"{idx}:Cnc"
        )
        for name, (_, vtype, writable) in VARIABLES.items():
            var = await cnc.add_variable(
                ua.NodeId.from_string(f"ns={idx};s=Cnc.{name}"),
                f"{idx}:{name}",
                ua.Variant(self.values[name], vtype),
            )
            if writable:
                await var.set_writable()
            self._nodes[name] = var
        _not_writable_status(server)
        await server.start()
        # The once-a-second clock update makes stop() wait up to a second; tests need no clock.
        task = server.iserver.time_task
        if task is not None:
            task.cancel()
            server.iserver.time_task = None
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            # Keep the current values, so a restarted server carries on from them.
            for name, var in self._nodes.items():
                self.values[name] = await var.read_value()
            await self._server.stop()
            self._server = None

    async def set(self, name: str, value: Any) -> None:
        vtype = VARIABLES[name][1]
        await self._nodes[name].write_value(ua.Variant(value, vtype))

    async def get(self, name: str) -> Any:
        return await self._nodes[name].read_value()


def _not_writable_status(server: Server) -> None:
    """Answer a write to a read-only node with BadNotWritable, as the specification says.

    asyncua answers BadUserAccessDenied whether the node or the user lacks write access;
    OPC UA Part 4 keeps BadUserAccessDenied for the user and BadNotWritable for the node.
    """
    service = server.iserver.attribute_service
    aspace = service._aspace
    write = service.write

    async def spec_write(params: ua.WriteParameters, user: Any = None) -> list[ua.StatusCode]:
        results = await (write(params) if user is None else write(params, user))
        out: list[ua.StatusCode] = []
        for wv, st in zip(params.NodesToWrite, results, strict=True):
            if st.value == ua.StatusCodes.BadUserAccessDenied:
                al = aspace.read_attribute_value(wv.NodeId, ua.AttributeIds.AccessLevel)
                level = al.Value.Value if al.Value is not None else 0
                if not level & ua.AccessLevel.CurrentWrite.mask:
                    st = ua.StatusCode(ua.UInt32(ua.StatusCodes.BadNotWritable))
            out.append(st)
        return out

    service.write = spec_write  # type: ignore[method-assign]


def quiet() -> None:
    logging.getLogger("asyncua").setLevel(logging.ERROR)


@pytest.fixture
async def opcua_server() -> AsyncIterator[OpcUaTestServer]:
    quiet()
    server = OpcUaTestServer(free_port())
    await server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(Exception):
            await server.stop()


@pytest.fixture
async def secure_opcua_server(
    tmp_path: Path,
) -> AsyncIterator[tuple[OpcUaTestServer, CertPair]]:
    """Basic256Sha256 SignAndEncrypt, user ``operator`` / ``s3cret``; yields the client cert."""
    quiet()
    server_cert = await make_cert(tmp_path, "server", "urn:yugong:test:server", server=True)
    client_cert = await make_cert(tmp_path, "client", "urn:yugong:test:gateway", server=False)
    server = OpcUaTestServer(free_port(), cert=server_cert, users={"operator": "s3cret"})
    await server.start()
    try:
        yield server, client_cert
    finally:
        with contextlib.suppress(Exception):
            await server.stop()
