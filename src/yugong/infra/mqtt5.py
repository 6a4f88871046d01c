"""The public MQTT front of the embedded broker: MQTT 3.1.1 and MQTT 5 on one port.

amqtt speaks MQTT 3.1.1 only, while current device SDKs (ThingsBoard's among them) connect
with MQTT 5. :class:`MqttFront` listens on the public address and opens one connection to
amqtt (on a loopback port) per client. It reads the client's CONNECT and then either

- splices the bytes through unchanged (3.1.1 and 3.1), only walking the packet headers
  from the client to refuse a packet larger than the limit before anyone buffers it, or
- translates every packet both ways between MQTT 5 and 3.1.1 (OASIS mqtt-v5.0): properties
  are dropped towards amqtt and empty ones inserted towards the client, reason codes are
  mapped. Nothing is advertised in CONNACK, so clients use neither topic aliases nor
  anything else amqtt cannot do.

A malformed or oversized packet closes that connection only. ``peers`` maps the local port
of each connection to amqtt to the client's real address, so the broker's plugins (which
only see the loopback hop) can name the device's IP; ``certs`` maps it to the DER of the
client certificate a TLS client presented.

With an SSL context the front terminates TLS itself (the handshake runs after accept, so a
refused certificate is reported with the client's address). ``acl`` lets the front refuse
an MQTT 5 client's PUBLISH with a reason code (PUBACK/PUBREC 0x87, not authorized) instead
of passing it on; a refused subscription comes back from the broker as 0x80, which is a
failure code in MQTT 5 too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

CHUNK = 65_536
# Room for the topic, packet id and properties around a payload at the size limit. A
# payload a little over the limit still reaches the broker, which refuses that message and
# keeps the connection; only a packet beyond this headroom closes the connection unread.
HEADROOM = 65_536 + 1024

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = range(8, 16)

# MQTT 5 reason codes the front sends itself.
MALFORMED = 0x81
PROTOCOL_ERROR = 0x82
UNSUPPORTED_VERSION = 0x84
BAD_AUTH_METHOD = 0x8C
NOT_AUTHORIZED = 0x87
TOPIC_ALIAS_INVALID = 0x94
PACKET_TOO_LARGE = 0x95
DISCONNECT_WITH_WILL = 0x04
# CONNACK return code (3.1.1) -> reason code (5).
CONNACK_REASON = {0: 0x00, 1: 0x84, 2: 0x85, 3: 0x88, 4: 0x86, 5: 0x87}
MAX_TOPIC_ALIASES = 64  # aliases a client may use although none were offered

# MQTT 5 property identifier -> wire type, to walk a property block (section 2.2.2.2).
_BYTE, _U16, _U32, _VARINT, _STR, _BIN, _PAIR = range(7)
_PROPERTY_TYPES = {
    **dict.fromkeys((0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A), _BYTE),
    **dict.fromkeys((0x13, 0x21, 0x22, 0x23), _U16),
    **dict.fromkeys((0x02, 0x11, 0x18, 0x27), _U32),
    0x0B: _VARINT,
    **dict.fromkeys((0x03, 0x08, 0x12, 0x15, 0x1A, 0x1C, 0x1F), _STR),
    **dict.fromkeys((0x09, 0x16), _BIN),
    0x26: _PAIR,
}
SESSION_EXPIRY, AUTH_METHOD, TOPIC_ALIAS = 0x11, 0x15, 0x23


class MalformedPacket(Exception):
    """The client sent bytes that are not a valid packet; ``reason`` is the v5 reason code."""

    def __init__(self, detail: str, reason: int = MALFORMED) -> None:
        super().__init__(detail)
        self.reason = reason


class PacketTooLarge(MalformedPacket):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"packet of {size} bytes, at most {limit} accepted", PACKET_TOO_LARGE)


class DropConnection(Exception):
    """End the connection at once, without a DISCONNECT to either side."""


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    for i in range(pos, min(pos + 4, len(buf))):
        b = buf[i]
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i + 1
        shift += 7
    raise MalformedPacket("bad variable byte integer")


def _u16(buf: bytes, pos: int) -> int:
    if pos + 2 > len(buf):
        raise MalformedPacket("packet ends inside a two-byte integer")
    return (buf[pos] << 8) | buf[pos + 1]


def _field(buf: bytes, pos: int) -> int:
    """End of the length-prefixed string or binary field at ``pos``."""
    end = pos + 2 + _u16(buf, pos)
    if end > len(buf):
        raise MalformedPacket("packet ends inside a string")
    return end


def _properties(buf: bytes, pos: int) -> tuple[dict[int, int | bytes], int]:
    """Parse the property block at ``pos``: (the properties, position after the block)."""
    length, pos = _read_varint(buf, pos)
    end = pos + length
    if end > len(buf):
        raise MalformedPacket("properties run past the packet")
    found: dict[int, int | bytes] = {}
    while pos < end:
        ident = buf[pos]
        kind = _PROPERTY_TYPES.get(ident)
        pos += 1
        if kind is None:
            raise MalformedPacket(f"unknown property 0x{ident:02x}")
        if kind == _BYTE:
            found[ident], pos = buf[pos], pos + 1
        elif kind == _U16:
            found[ident], pos = _u16(buf, pos), pos + 2
        elif kind == _U32:
            found[ident], pos = int.from_bytes(buf[pos : pos + 4], "big"), pos + 4
        elif kind == _VARINT:
            found[ident], pos = _read_varint(buf, pos)
        elif kind == _PAIR:
            pos = _field(buf, _field(buf, pos))
        else:
            nxt = _field(buf, pos)
            found[ident], pos = bytes(buf[pos + 2 : nxt]), nxt
    if pos != end:
        raise MalformedPacket("a property runs past its block")
    return found, end


def packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + varint(len(body)) + body


class Framer:
    """Cuts a byte stream into (first byte, body) packets, refusing an oversized remaining
    length as soon as its header is read, so a huge length never allocates. The packets
    before a bad one are still returned; the error waits in ``error``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buf = bytearray()
        self.error: MalformedPacket | None = None

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self.buf
        buf += data
        out: list[tuple[int, bytes]] = []
        pos, n = 0, len(buf)
        try:
            while n - pos >= 2:
                length, i = _header(buf, pos + 1, n)
                if i < 0:
                    break  # header incomplete
                if length > self.limit:
                    raise PacketTooLarge(length, self.limit)
                if i + length > n:
                    break
                out.append((buf[pos], bytes(buf[i : i + length])))
                pos = i + length
        except MalformedPacket as exc:
            self.error = exc
        del buf[:pos]
        return out


def _header(buf: bytes | bytearray, i: int, n: int) -> tuple[int, int]:
    """The remaining length starting at ``i`` and the position after it; -1 if incomplete."""
    length, shift = 0, 0
    while i < n:
        b = buf[i]
        length |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return length, i
        shift += 7
        if shift > 21:
            raise MalformedPacket("remaining length longer than four bytes")
    return 0, -1


class Scanner:
    """Walks packet headers in a stream passed through unchanged, refusing an oversized
    remaining length; it never copies or keeps the bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.skip = 0
        self.header = bytearray()  # the fixed header read so far
        self.error: MalformedPacket | None = None

    def feed(self, data: bytes) -> int:
        """How many bytes of ``data`` precede a bad packet: all of them unless ``error``
        is set."""
        pos, n = 0, len(data)
        header = self.header
        start = 0  # where the packet being read began in this chunk
        while pos < n:
            if self.skip:
                step = min(self.skip, n - pos)
                self.skip -= step
                pos += step
                continue
            if not header:
                start = pos
            header.append(data[pos])
            pos += 1
            if len(header) == 1 or header[-1] & 0x80:
                if len(header) == 5:
                    self.error = MalformedPacket("remaining length longer than four bytes")
                    return start
                continue
            length, _ = _header(header, 1, len(header))
            if length > self.limit:
                self.error = PacketTooLarge(length, self.limit)
                return start
            self.skip = length
            header.clear()
        return n


Acl = Callable[[str], bool]  # may this connection publish to the topic?


@dataclass
class V5Translator:
    """Per-connection state of an MQTT 5 client spoken to a 3.1.1 broker."""

    aliases: dict[int, bytes] = field(default_factory=dict)
    unsubscribes: dict[int, int] = field(default_factory=dict)  # packet id -> filters
    may_publish: Acl | None = None
    replies: list[bytes] = field(default_factory=list)  # answers the front gives itself
    refused_qos2: set[bytes] = field(default_factory=set)  # ids answered with a failed PUBREC

    @staticmethod
    def connect(body: bytes) -> bytes:
        """A v5 CONNECT body as a 3.1.1 CONNECT packet."""
        pos = _field(body, 0)
        if pos + 4 > len(body):
            raise MalformedPacket("CONNECT too short")
        flags = body[pos + 1]
        if flags & 0x01:
            raise MalformedPacket("CONNECT reserved flag set")
        keep_alive = body[pos + 2 : pos + 4]
        props, pos = _properties(body, pos + 4)
        if AUTH_METHOD in props:
            raise MalformedPacket("enhanced authentication is not supported", BAD_AUTH_METHOD)
        start = pos
        pos = _field(body, pos)  # client id
        if flags & 0x04:  # will: properties, topic, payload
            _, will_at = _properties(body, pos)
            head, pos = body[start:pos], _field(body, _field(body, will_at))
            tail = head + body[will_at:pos]
        else:
            tail = body[start:pos]
        if flags & 0x80:
            end = _field(body, pos)
            tail, pos = tail + body[pos:end], end
        if flags & 0x40:
            end = _field(body, pos)
            tail, pos = tail + body[pos:end], end
        if pos != len(body):
            raise MalformedPacket("bytes after the CONNECT payload")
        # Clean start, a session that ends with the connection (no expiry interval) or one
        # with no client id to resume it by: nothing outlives it, 3.1.1's clean session.
        if props.get(SESSION_EXPIRY, 0) == 0 or _u16(body, start) == 0:
            flags |= 0x02
        return packet(0x10, b"\x00\x04MQTT\x04" + bytes([flags]) + keep_alive + tail)

    def from_client(self, first: int, body: bytes) -> bytes:
        kind = first >> 4
        if kind == PUBLISH:
            return self._publish_in(first, body)
        if kind in (PUBACK, PUBREC, PUBREL, PUBCOMP):
            if len(body) < 2:
                raise MalformedPacket("acknowledgement without packet id")
            if kind == PUBREL and body[:2] in self.refused_qos2:
                # Some clients release a message refused in PUBREC anyway: complete it
                # here, the broker never saw it.
                self.refused_qos2.discard(body[:2])
                self.replies.append(bytes([0x70, 2]) + body[:2])
                return b""
            return bytes([first, 2]) + body[:2]
        if kind == SUBSCRIBE:
            _, pos = _properties(body, 2)
            out = bytearray(body[:2])
            while pos < len(body):
                end = _field(body, pos)
                if end >= len(body):
                    raise MalformedPacket("subscription without options")
                out += body[pos:end]
                out.append(body[end] & 0x03)  # QoS only: no-local etc. are v5 options
                pos = end + 1
            if len(out) == 2:
                raise MalformedPacket("SUBSCRIBE without topic filters", PROTOCOL_ERROR)
            return packet(first, bytes(out))
        if kind == UNSUBSCRIBE:
            _, pos = _properties(body, 2)
            filters, start = 0, pos
            while pos < len(body):
                pos = _field(body, pos)
                filters += 1
            if not filters:
                raise MalformedPacket("UNSUBSCRIBE without topic filters", PROTOCOL_ERROR)
            self.unsubscribes[_u16(body, 0)] = filters
            return packet(first, body[:2] + body[start:])
        if kind == PINGREQ:
            return b"\xc0\x00"
        if kind == DISCONNECT:
            if body and body[0] == DISCONNECT_WITH_WILL:
                raise DropConnection()  # drop the link unannounced: the broker publishes the will
            return b"\xe0\x00"
        if kind == AUTH:
            raise MalformedPacket("enhanced authentication is not supported", BAD_AUTH_METHOD)
        raise MalformedPacket(f"packet type {kind} is not sent by clients", PROTOCOL_ERROR)

    def _publish_in(self, first: int, body: bytes) -> bytes:
        qos = (first >> 1) & 0x03
        if qos == 3:
            raise MalformedPacket("PUBLISH with QoS 3")
        topic_end = _field(body, 0)
        at = topic_end + (2 if qos else 0)
        if at >= len(body):
            raise MalformedPacket("PUBLISH too short")
        if body[at] == 0:  # no properties: the common case
            if not self._may_publish(first, body[:at]):
                return b""
            return packet(first, body[:at] + body[at + 1 :])
        props, payload_at = _properties(body, at)
        alias = props.get(TOPIC_ALIAS)
        head = body[:at]
        if isinstance(alias, int):
            if not 0 < alias <= MAX_TOPIC_ALIASES:
                raise MalformedPacket(f"topic alias {alias} was not offered", TOPIC_ALIAS_INVALID)
            if topic_end > 2:
                self.aliases[alias] = body[:topic_end]
            elif alias in self.aliases:
                head = self.aliases[alias] + body[topic_end:at]
            else:
                raise MalformedPacket(f"topic alias {alias} is unknown", PROTOCOL_ERROR)
        if not self._may_publish(first, head):
            return b""
        return packet(first, head + body[payload_at:])

    def _may_publish(self, first: int, head: bytes) -> bool:
        """Ask the ACL; a refused QoS 1/2 message is answered here with 0x87 and not
        passed on (a QoS 0 one is dropped)."""
        if self.may_publish is None:
            return True
        end = _field(head, 0)
        try:
            topic = head[2:end].decode()
        except UnicodeDecodeError as exc:
            raise MalformedPacket("topic is not UTF-8") from exc
        if self.may_publish(topic):
            return True
        qos = (first >> 1) & 0x03
        if qos:
            ack = 0x40 if qos == 1 else 0x50  # PUBACK / PUBREC
            packet_id = head[end : end + 2]
            self.replies.append(bytes([ack, 4]) + packet_id + bytes([NOT_AUTHORIZED, 0]))
            if qos == 2 and len(self.refused_qos2) < 65_536:
                self.refused_qos2.add(packet_id)
        return False

    def from_broker(self, first: int, body: bytes) -> bytes:
        kind = first >> 4
        if kind == PUBLISH:
            at = _field(body, 0) + (2 if first & 0x06 else 0)
            return packet(first, body[:at] + b"\x00" + body[at:])
        if kind == CONNACK:
            if len(body) != 2:
                raise MalformedPacket("CONNACK from the broker is not two bytes")
            reason = CONNACK_REASON.get(body[1], 0x80)
            if reason:
                raise _ConnackRefused(bytes([0x20, 3, body[0], reason, 0]))
            return bytes([0x20, 3, body[0], 0, 0])
        if kind == SUBACK:  # a refused filter's 0x80 is a v5 failure code as it is
            return packet(first, body[:2] + b"\x00" + body[2:])
        if kind == UNSUBACK:
            filters = self.unsubscribes.pop(_u16(body, 0), 1)
            return packet(first, body[:2] + b"\x00" + b"\x00" * filters)
        return packet(first, body)  # PUBACK ... PUBCOMP (id only is valid v5), PINGRESP


class _ConnackRefused(DropConnection):
    def __init__(self, connack: bytes) -> None:
        super().__init__()
        self.connack = connack


def _translate(
    packets: list[tuple[int, bytes]], translate: Callable[[int, bytes], bytes]
) -> tuple[bytes, Exception | None]:
    """The translated packets up to the first that cannot be, and why it cannot."""
    out: list[bytes] = []
    for first, body in packets:
        try:
            out.append(translate(first, body))
        except (DropConnection, MalformedPacket) as exc:
            return b"".join(out), exc
    return b"".join(out), None


Refused = Callable[[str, str, str], None]  # (reason, client address, detail)
PortAcl = Callable[[int, str], bool]  # (local port towards amqtt, topic) -> may publish
Pump = Coroutine[Any, Any, bool]


class MqttFront:
    """``await start()`` listens on ``host:port`` and relays to amqtt at ``upstream``."""

    def __init__(
        self,
        host: str,
        port: int,
        upstream: tuple[str, int],
        *,
        max_payload_bytes: int,
        on_refused: Refused | None = None,
        levels: dict[int, int] | None = None,
        connect_timeout_s: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        peers: dict[int, str] | None = None,
        certs: dict[int, bytes] | None = None,
        acl: PortAcl | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.upstream = upstream
        self.limit = max_payload_bytes + HEADROOM
        self.on_refused = on_refused or (lambda reason, peer, detail: None)
        self.connect_timeout_s = connect_timeout_s
        self.levels = levels if levels is not None else {}  # protocol level -> connections
        self.ssl_context = ssl_context
        self.acl = acl
        # local port towards amqtt -> "client-ip:port" / the client certificate's DER
        self.peers: dict[int, str] = peers if peers is not None else {}
        self.certs: dict[int, bytes] = certs if certs is not None else {}
        # local port towards amqtt -> (client writer, protocol level), for disconnect()
        self.clients: dict[int, tuple[asyncio.StreamWriter, int]] = {}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        if self.port == 0:  # tests ask for any free port
            self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    def disconnect(self, local_port: int, reason: int) -> bool:
        """Close the client behind ``local_port`` (its connection to amqtt); an MQTT 5
        client is sent DISCONNECT with ``reason`` first. False if it is not ours."""
        entry = self.clients.pop(local_port, None)
        if entry is None:
            return False
        writer, level = entry
        if level == 5:
            writer.write(packet(0xE0, bytes([reason, 0])))
        writer.close()
        return True

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peername = writer.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if peername else "?"
        try:
            cert = await self._handshake(writer, peer) if self.ssl_context else b""
            if cert is not None:
                await self._serve(reader, writer, peer, cert)
        except (asyncio.CancelledError, ConnectionError):
            pass
        except Exception:  # one connection's trouble must never reach the listener
            log.exception("MQTT connection from %s failed", peer)
        finally:
            writer.close()
            self._tasks.discard(task)

    async def _handshake(self, writer: asyncio.StreamWriter, peer: str) -> bytes | None:
        """TLS handshake: the client certificate's DER (b"" without one), None if the
        handshake failed (reported as bad_certificate when the certificate was refused)."""
        assert self.ssl_context is not None
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                await writer.start_tls(self.ssl_context)
        except ssl.SSLCertVerificationError as exc:
            self.on_refused("bad_certificate", peer, exc.verify_message or str(exc))
            return None
        except TimeoutError:
            self.on_refused("tls_handshake", peer, "no TLS handshake in time")
            return None
        except (ssl.SSLError, ConnectionError, OSError) as exc:
            self.on_refused("tls_handshake", peer, str(exc) or type(exc).__name__)
            return None
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        return der or b""

    def _refused(self, exc: Exception, peer: str) -> None:
        reason = "too_large" if isinstance(exc, PacketTooLarge) else "malformed"
        self.on_refused(reason, peer, str(exc))

    async def _first_packets(
        self, reader: asyncio.StreamReader, framer: Framer
    ) -> list[tuple[int, bytes]]:
        async with asyncio.timeout(self.connect_timeout_s):
            while True:
                chunk = await reader.read(CHUNK)
                if not chunk:
                    return []
                packets = framer.feed(chunk)
                if packets:
                    return packets
                if framer.error is not None:
                    raise framer.error

    async def _serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: str,
        cert: bytes = b"",
    ) -> None:
        framer = Framer(self.limit)
        level = -1
        try:
            packets = await self._first_packets(reader, framer)
            if not packets:
                return
            first, body = packets[0]
            if first != 0x10:
                raise MalformedPacket("the first packet is not CONNECT", PROTOCOL_ERROR)
            name_end = _field(body, 0)
            level = body[name_end] if name_end < len(body) else -1
            connect = V5Translator.connect(body) if level == 5 else packet(first, body)
        except TimeoutError:
            self.on_refused("connect_timeout", peer, "no CONNECT in time")
            return
        except MalformedPacket as exc:
            self._refused(exc, peer)
            if level == 5:
                writer.write(bytes([0x20, 3, 0, exc.reason, 0]))
            return
        self.levels[level] = self.levels.get(level, 0) + 1
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        local = up_writer.get_extra_info("sockname")[1]
        self.peers[local] = peer
        self.clients[local] = (writer, level)
        if cert:
            self.certs[local] = cert
        try:
            up_writer.write(connect)
            if level == 5:
                acl = self.acl
                translator = V5Translator(
                    may_publish=(lambda topic: acl(local, topic)) if acl is not None else None
                )
                await self._relay(
                    self._translate_in(
                        reader, framer, packets[1:], up_writer, writer, translator, peer
                    ),
                    self._translate_out(up_reader, writer, translator),
                    up_writer,
                )
            else:
                await self._relay(
                    self._splice_in(reader, framer, packets[1:], up_writer, peer),
                    self._copy(up_reader, writer),
                    up_writer,
                )
        finally:
            self.peers.pop(local, None)
            self.clients.pop(local, None)
            self.certs.pop(local, None)
            up_writer.close()

    async def _relay(self, inbound: Pump, outbound: Pump, up_writer: asyncio.StreamWriter) -> None:
        """Run both directions. The client's end of stream is passed on (after every byte it
        sent) and the broker's answer awaited; the broker closing ends the connection."""
        into = asyncio.ensure_future(inbound)
        out = asyncio.ensure_future(outbound)
        try:
            done, _ = await asyncio.wait({into, out}, return_when=asyncio.FIRST_COMPLETED)
            if into in done and not into.exception() and into.result():
                with contextlib.suppress(OSError):
                    up_writer.write_eof()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(out), 10)
        finally:
            for task in (into, out):
                task.cancel()
            await asyncio.gather(into, out, return_exceptions=True)

    async def _splice_in(
        self,
        reader: asyncio.StreamReader,
        framer: Framer,
        early: list[tuple[int, bytes]],
        up: asyncio.StreamWriter,
        peer: str,
    ) -> bool:
        """Client to broker, unchanged; True on a clean end of stream."""
        scanner = Scanner(self.limit)
        up.write(b"".join(packet(f, b) for f, b in early))
        chunk = bytes(framer.buf)  # what followed the packets already cut
        error: Exception | None = framer.error
        try:
            while error is None:
                good = scanner.feed(chunk)
                up.write(chunk if good == len(chunk) else chunk[:good])
                await up.drain()
                error = scanner.error
                if error is None:
                    chunk = await reader.read(CHUNK)
                    if not chunk:
                        return True
        except ConnectionError:
            return False
        self._refused(error, peer)
        return False

    @staticmethod
    async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(CHUNK):
                writer.write(chunk)
                await writer.drain()
        return True

    async def _translate_in(
        self,
        reader: asyncio.StreamReader,
        framer: Framer,
        packets: list[tuple[int, bytes]],
        up: asyncio.StreamWriter,
        client: asyncio.StreamWriter,
        translator: V5Translator,
        peer: str,
    ) -> bool:
        """Client (v5) to broker (3.1.1); True on a clean end of stream."""
        try:
            while True:
                data, error = _translate(packets, translator.from_client)
                up.write(data)
                if translator.replies:
                    client.write(b"".join(translator.replies))
                    translator.replies.clear()
                await up.drain()
                error = error or framer.error
                if isinstance(error, MalformedPacket):
                    self._refused(error, peer)
                    client.write(packet(0xE0, bytes([error.reason, 0])))
                    await client.drain()
                    return False
                if error is not None:  # DISCONNECT asking for the will
                    return False
                chunk = await reader.read(CHUNK)
                if not chunk:
                    return True
                packets = framer.feed(chunk)
        except ConnectionError:
            return False

    @staticmethod
    async def _translate_out(
        reader: asyncio.StreamReader, client: asyncio.StreamWriter, translator: V5Translator
    ) -> bool:
        framer = Framer(2**28)  # the broker is trusted
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(CHUNK):
                data, error = _translate(framer.feed(chunk), translator.from_broker)
                client.write(data)
                if isinstance(error, _ConnackRefused):
                    client.write(error.connack)
                elif error is not None:
                    log.warning("unreadable packet from the embedded broker: %s", error)
                await client.drain()
                if error is not None:
                    break
        return True
