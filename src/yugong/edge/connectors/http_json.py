"""HTTP/JSON connector: poll a JSON endpoint on an interval and map JSON paths to points.

One session per device profile. Each poll group issues one GET and maps the answer through
the group's points. A timeout, a refused connection, an HTTP error status or a body that is
not JSON is a failed poll: the base connector turns it into availability False (logged once)
and BAD samples for the group, then retries with backoff; the first good answer is the
recovery (logged once).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, Field

from yugong.core.ratelog import RateLimitedLog
from yugong.core.timeutil import now_us
from yugong.edge.connectors.base import (
    Backoff,
    Connector,
    DeviceSession,
    DeviceStats,
    DeviceUnreachable,
    PollGroup,
    PollResult,
    PollTimeout,
    Sink,
    WriteResult,
    WriteStatus,
)
from yugong.edge.jsonpath import Columns, JsonPointMap, TimestampUnit
from yugong.edge.profiles import DeviceProfile, HttpJsonConnection

log = logging.getLogger("yugong.edge.connectors.http_json")


class HttpJsonOptions(BaseModel):
    """Options HttpJsonConnection does not carry (yet)."""

    model_config = ConfigDict(extra="forbid")

    report_missing: bool = False  # a path absent from the answer -> BAD sample
    timestamp_path: str | None = None  # the document's own timestamp; else receive time
    timestamp_unit: TimestampUnit = "auto"
    username: str | None = None  # HTTP basic auth
    password: str | None = None
    verify: bool | str = True  # TLS: verify the server (or the CA bundle file to trust)
    max_body: int = Field(16 * 1024 * 1024, gt=0)  # bytes; a larger answer is a failed poll


class HttpStatusError(DeviceUnreachable):
    """The endpoint answered with an HTTP error status."""


class HttpJsonSession(DeviceSession):
    def __init__(self, profile: DeviceProfile, options: HttpJsonOptions) -> None:
        conn = profile.connection
        if not isinstance(conn, HttpJsonConnection):
            raise ValueError(f"{profile.name}: not an http_json profile ({profile.protocol})")
        self.name = profile.name
        self.conn = conn
        self.options = options
        self.stats = DeviceStats()
        self._warn = RateLimitedLog(log, 60.0)
        by_group: dict[str, list[str]] = {}
        for p in profile.points:
            assert p.group is not None  # resolved when the profile loads
            by_group.setdefault(p.group, []).append(p.property)
        intervals = profile.poll_groups()
        self.groups = [
            PollGroup(g, intervals[g] / 1e6, tuple(points)) for g, points in by_group.items()
        ]
        self._maps = {
            g: JsonPointMap(
                [p for p in profile.points if p.group == g],
                report_missing=options.report_missing,
                timestamp_path=options.timestamp_path,
                timestamp_unit=options.timestamp_unit,
            )
            for g in by_group
        }
        self._client: httpx.AsyncClient | None = None

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def connect(self) -> None:
        # HTTP has no session to open; the client keeps connections alive between polls.
        auth = None
        if self.options.username is not None:
            auth = httpx.BasicAuth(self.options.username, self.options.password or "")
        self._client = httpx.AsyncClient(
            headers=self.conn.headers,
            timeout=self.conn.timeout,
            auth=auth,
            verify=self.options.verify,
            follow_redirects=True,
        )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def poll(self, group: PollGroup) -> PollResult:
        if self._client is None:
            raise DeviceUnreachable("not connected")
        url = self.conn.url
        try:
            response = await self._client.get(url)
        except httpx.TimeoutException as exc:
            raise PollTimeout(f"no answer from {url} within {self.conn.timeout}s") from exc
        except httpx.HTTPError as exc:
            raise DeviceUnreachable(f"{url}: {exc or type(exc).__name__}") from exc
        received = now_us()
        body = response.content
        self.stats.bytes_received += len(body)
        if response.status_code >= 400:
            raise HttpStatusError(f"{url}: HTTP {response.status_code} {response.reason_phrase}")
        if len(body) > self.options.max_body:
            raise DeviceUnreachable(f"{url}: answer of {len(body)} bytes is over the limit")
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise DeviceUnreachable(f"{url}: the answer is not JSON ({exc})") from exc
        mapping = self._maps[group.name]
        try:
            ts = mapping.timestamp(doc, received)
        except ValueError as exc:
            raise DeviceUnreachable(f"{url}: {exc}") from exc
        out = Columns()
        bad = mapping.extract(doc, self.name, ts, out)
        if not len(out) and group.points:
            # The endpoint answered, but with nothing this profile knows: most likely a wrong
            # URL or profile. Counted and said, not silently skipped.
            self.stats.errors += 1
            self._warn.warning(
                f"shape:{group.name}",
                f"{self.name}: none of the {len(group.points)} point paths of poll group "
                f"'{group.name}' is in the answer from {url}; nothing read",
            )
        self.stats.bad_points += bad
        self.stats.points_read += len(out) - bad
        return PollResult(batches=[out.table()] if len(out) else [])

    async def write(self, point: str, value: float | bool | str) -> WriteResult:
        return WriteResult(WriteStatus.INVALID, f"{self.name}: http_json points are read-only")


class HttpJsonConnector(Connector):
    kind = "http_json"

    def __init__(
        self,
        name: str,
        profiles: Sequence[DeviceProfile],
        sink: Sink,
        *,
        options: HttpJsonOptions | Mapping[str, HttpJsonOptions] | None = None,
        backoff: Callable[[], Backoff] = Backoff,
    ) -> None:
        """``options`` applies to every device, or is looked up by device name."""
        super().__init__(name, sink, backoff=backoff)
        self._profiles = list(profiles)
        self._options = options

    def options_for(self, device: str) -> HttpJsonOptions:
        if isinstance(self._options, HttpJsonOptions):
            return self._options
        if self._options is not None and device in self._options:
            return self._options[device]
        return HttpJsonOptions()

    def build_sessions(self) -> list[DeviceSession]:
        return [HttpJsonSession(p, self.options_for(p.name)) for p in self._profiles]
