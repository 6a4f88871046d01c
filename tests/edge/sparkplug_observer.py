"""A host-side MQTT client for the Sparkplug tests: it records every message of a group (and
of any other topics it is asked to follow, such as STATE), plain or over TLS with a client
certificate and a password, and can publish commands."""

from __future__ import annotations

import json
import ssl
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pysparkplug import _protobuf as psp_pb


def decode(payload: bytes) -> Any:
    """A Sparkplug B payload as its raw protobuf message."""
    raw = psp_pb.Payload()
    raw.ParseFromString(payload)
    return raw


class Observer:
    """Subscribes to ``spBv1.0/{group}/#`` and ``also`` (QoS 1) and records every message.

    With ``ca_file`` it connects over TLS, verifying the broker against that CA and showing
    ``cert_file``/``key_file`` when given; ``username`` and ``password`` log it in."""

    def __init__(
        self,
        host: str,
        port: int,
        group: str,
        *,
        also: Sequence[str] = (),
        username: str | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
    ) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"obs-{uuid.uuid4().hex[:8]}"
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if ca_file is not None:
            self.client.tls_set(
                ca_certs=str(ca_file),
                certfile=str(cert_file) if cert_file else None,
                keyfile=str(key_file) if key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect(host, port)
        topics = [f"spBv1.0/{group}/#", *also]
        self.client.subscribe([(topic, 1) for topic in topics])
        self.client.loop_start()
        assert subscribed.wait(5), f"the observer could not subscribe to {topics}"

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def _snapshot(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self.messages)

    def of(self, kind: str) -> list[tuple[str, bytes]]:
        """(topic, payload) of every Sparkplug message of this kind (NBIRTH, DDATA, ...)."""
        return [
            (t, p)
            for t, p in self._snapshot()
            if (parts := t.split("/"))[1] != "STATE" and parts[2] == kind
        ]

    def decoded(self, kind: str) -> list[tuple[str, Any]]:
        """As ``of``, with each payload decoded."""
        return [(t, decode(p)) for t, p in self.of(kind)]

    def seqs(self) -> list[int]:
        """The seq of every birth and data message, in the order they arrived."""
        return [
            decode(p).seq
            for t, p in self._snapshot()
            if t.split("/")[2] in ("NBIRTH", "DBIRTH", "NDATA", "DDATA")
        ]

    def states(self, host_id: str) -> list[bool]:
        """The ``online`` flag of each STATE message of this host (when ``also`` follows it)."""
        return [
            json.loads(p)["online"] for t, p in self._snapshot() if t == f"spBv1.0/STATE/{host_id}"
        ]

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()  # wakes the network loop, so stopping it is quick
        self.client.loop_stop()
