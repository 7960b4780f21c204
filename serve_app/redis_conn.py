"""`RedisLink`: the one Redis client of a replica, with its health and automatic recovery.

Redis is an accelerator here (cache, shared rate limits), never a dependency of an answer.
So every call has a short deadline, and once a call fails the link stops trying for
`cool_off_s`: a dead Redis costs one timeout per cool-off, not one per request. After the
cool-off the next call tries again (and `probe`, which `/readyz` calls, always tries), so
recovery needs no restart. State changes are logged once, with the error's type only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from serve_app.observability import get_logger

if TYPE_CHECKING:
    from serve_app.config import ProtectionArgs, ProtectionSettings

log = get_logger(__name__)

T = TypeVar("T")


class RedisUnavailableError(Exception):
    """Raised by `RedisLink.run` when Redis failed, timed out or is cooling off."""


class RedisLink:
    """A Redis client with a deadline per call, a health flag and a cool-off after failure."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "hk:",
        timeout_s: float = 0.25,
        cool_off_s: float = 1.0,
    ) -> None:
        self.prefix = prefix
        self.timeout_s = timeout_s
        self.cool_off_s = cool_off_s
        # No retries: a retry inside the client would multiply the deadline when Redis is down.
        self.client: Redis = Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._down_until = 0.0
        self.reason: str | None = None

    def key(self, *parts: str) -> str:
        """A key under this deployment's prefix."""
        return self.prefix + ":".join(parts)

    @property
    def available(self) -> bool:
        """False from a failure until a call (or a probe) succeeds again."""
        return self.reason is None

    async def run(self, op: Callable[[Redis], Awaitable[T]]) -> T:
        """Run `op(client)` under the deadline; raise `RedisUnavailableError` on any failure."""
        if self.reason is not None and time.monotonic() < self._down_until:
            raise RedisUnavailableError(self.reason)
        return await self._attempt(op)

    async def probe(self) -> bool:
        """Ping now, cool-off or not; True when Redis answered."""
        try:
            await self._attempt(lambda client: client.ping())
        except RedisUnavailableError:
            return False
        return True

    async def _attempt(self, op: Callable[[Redis], Awaitable[T]]) -> T:
        try:
            # The socket timeouts bound each read; this bounds the whole call (pipelines).
            result = await asyncio.wait_for(op(self.client), 2 * self.timeout_s)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            raise RedisUnavailableError(self.reason) from exc
        if self.reason is not None:
            log.warning("redis_recovered", after=self.reason)
            self.reason = None
        return result

    def _failed(self, exc: BaseException) -> None:
        if self.reason is None:
            log.warning("redis_unavailable", error=type(exc).__name__, prefix=self.prefix)
        self.reason = f"redis unavailable: {type(exc).__name__}"
        self._down_until = time.monotonic() + self.cool_off_s

    async def close(self) -> None:
        await self.client.aclose()


def link_from_settings(settings: ProtectionSettings, protection: ProtectionArgs) -> RedisLink:
    """The link to `REDIS_URL` under the config's key prefix and timeout."""
    return RedisLink(
        settings.redis_url.get_secret_value(),
        prefix=protection.redis_prefix,
        timeout_s=protection.redis_timeout_s,
    )
