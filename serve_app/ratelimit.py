"""Rate limits per API key and per end user: GCRA in Redis, in-process while Redis is away.

GCRA (the generic cell rate algorithm) keeps one number per bucket, the theoretical arrival
time (TAT) of the next request. A quota of `limit` per `period` spaces requests `period /
limit` apart and tolerates a burst of `limit`: a request is allowed when `TAT + interval -
period <= now`, and then moves TAT on by one interval. One number, read and written by one
Lua script on Redis's own clock, makes the check atomic across replicas: concurrent requests
can never both take the last slot.

When Redis fails, the same arithmetic runs in this process (a bounded LRU of buckets), so a
replica keeps enforcing its own share instead of letting everything through; with N
replicas the effective limit is then up to N times the quota until Redis returns.

A request costs one unit per text: a batch of n texts moves TAT on by n intervals, and is
refused whole (nothing charged) until n units are free; its `Retry-After` is when they will
be. A cost above the quota itself could never fit: 422 `batch_exceeds_rate`, not a 429.

Buckets: `key:<api key id>`, `user:<keyed hash of (client, user id)>` and `addr:<keyed hash
of the client address>`; no raw user id or address reaches Redis. The address bucket is
charged for each request that would make the key store work (a missing or unknown key, or
one this replica has not verified), before it is asked, so a flood of bad keys gets 429 and
costs no database lookup (serve_app/deps.py). The address is `request.client.host`: inside
Serve's ingress that is what Serve's HTTP proxy (uvicorn) saw, the TCP peer, or, when the
peer is in uvicorn's `FORWARDED_ALLOW_IPS` (default 127.0.0.1), the right-most untrusted
`X-Forwarded-For` hop. Behind the KubeRay ingress the peer is the ingress controller, so
every outside caller shares its bucket unless the Ray containers set `FORWARDED_ALLOW_IPS`
to the controller's pod network; a key the replica has verified is never charged (its
re-checks after `key_cache_s` included), so a flood delays only the first use of other keys
on that replica.

Answers carry `RateLimit-Limit`, `-Remaining`, `-Reset` and `-Policy` (IETF draft
"RateLimit header fields for HTTP") of the key or user bucket, plus `Retry-After` on a 429.
Each refusal is logged (`rate_limited`, with its scope) and counted in
`happykube_rate_limited{scope}`.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections import OrderedDict
from dataclasses import dataclass

from fastapi import Request
from redis.asyncio import Redis
from starlette.datastructures import MutableHeaders
from starlette.types import Message, Receive, Scope, Send

from serve_app.asgi import HttpMiddleware
from serve_app.config import ProtectionArgs
from serve_app.errors import BatchExceedsRateError, RateLimitedError
from serve_app.observability import get_logger, replica_metrics
from serve_app.redis_conn import RedisLink, RedisUnavailableError

log = get_logger(__name__)

# KEYS[1] bucket; ARGV period_s, limit, cost. Returns {allowed, TAT - now after the call}.
# Floats leave Lua as strings: Redis would truncate a Lua number to an integer.
GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local period = tonumber(ARGV[1])
local interval = period / tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval * tonumber(ARGV[3])
if new_tat - period > now then
  return {0, tostring(tat - now)}
end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000))
return {1, tostring(new_tat - now)}
"""


@dataclass(frozen=True)
class Quota:
    limit: int
    period_s: float = 60.0

    @property
    def interval_s(self) -> float:
        return self.period_s / self.limit


@dataclass(frozen=True)
class Decision:
    """The verdict on one request and what the headers tell the client."""

    allowed: bool
    quota: Quota
    remaining: int
    reset_s: float  # until the bucket is full again
    retry_after_s: float  # until one more request fits; 0 when allowed

    @classmethod
    def of(cls, quota: Quota, allowed: bool, ahead_s: float, cost: int = 1) -> Decision:
        """Build from the GCRA outcome: `ahead_s` is how far TAT is ahead of now."""
        ahead_s = max(ahead_s, 0.0)
        remaining = max(math.floor((quota.period_s - ahead_s) / quota.interval_s + 1e-9), 0)
        if allowed:
            return cls(True, quota, remaining, ahead_s, 0.0)
        # A refused request took nothing: it fits once `cost` units are free again.
        retry = ahead_s + quota.interval_s * cost - quota.period_s
        return cls(False, quota, remaining, ahead_s, max(retry, 0.0))

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Limit": str(self.quota.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(math.ceil(self.reset_s)),
            "RateLimit-Policy": f"{self.quota.limit};w={math.ceil(self.quota.period_s)}",
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after_s)))
        return headers


def gcra(tat: float | None, now: float, quota: Quota, cost: int = 1) -> tuple[bool, float]:
    """One GCRA step, as the Lua script does it: (allowed, the TAT after the call)."""
    tat = now if tat is None or tat < now else tat
    new_tat = tat + quota.interval_s * cost
    if new_tat - quota.period_s > now:
        return False, tat
    return True, new_tat


class LocalBuckets:
    """GCRA in this process: the fallback while Redis is unavailable."""

    def __init__(self, max_buckets: int = 10_000) -> None:
        self.max_buckets = max_buckets
        self._tat: OrderedDict[str, float] = OrderedDict()

    def hit(self, bucket: str, quota: Quota, cost: int = 1) -> Decision:
        now = time.monotonic()
        allowed, tat = gcra(self._tat.get(bucket), now, quota, cost)
        self._tat[bucket] = tat
        self._tat.move_to_end(bucket)
        while len(self._tat) > self.max_buckets:
            self._tat.popitem(last=False)  # the longest idle bucket: most likely full again
        return Decision.of(quota, allowed, tat - now, cost)


class RateLimiter:
    """Per-key and per-user quotas, counted in Redis or, while it is away, locally."""

    def __init__(self, link: RedisLink, args: ProtectionArgs, secret: bytes) -> None:
        self.link = link
        self.key_quota = Quota(args.key_rate_per_minute)
        self.user_quota = Quota(args.user_rate_per_minute)
        self.address_quota = Quota(args.address_rate_per_minute)
        self.local = LocalBuckets()
        self._secret = hmac.new(secret, b"happykube-user-bucket", hashlib.sha256).digest()
        self._script = link.client.register_script(GCRA_LUA)
        self.metrics = replica_metrics()  # built in the ingress replica's constructor

    async def hit(self, bucket: str, quota: Quota, cost: int = 1) -> Decision:
        """Count one request against `bucket` and say whether it may go on."""

        async def call(client: Redis) -> list[object]:
            result: list[object] = await self._script(
                keys=[self.link.key("rl", bucket)],
                args=[quota.period_s, quota.limit, cost],
                client=client,
            )
            return result

        try:
            allowed, ahead = await self.link.run(call)
        except RedisUnavailableError:
            return self.local.hit(bucket, quota, cost)
        return Decision.of(quota, bool(allowed), float(_text(ahead)), cost)

    def user_bucket(self, client: str, user_id: str) -> str:
        """The bucket of one end user of one client: a keyed hash, never the id itself."""
        return "user:" + self._hashed(f"{client}\0{user_id}")

    def address_bucket(self, host: str) -> str:
        """The bucket of one client address: a keyed hash, never the address itself."""
        return "addr:" + self._hashed(host)

    def _hashed(self, text: str) -> str:
        return hmac.new(self._secret, text.encode(), hashlib.sha256).hexdigest()[:32]

    async def enforce(
        self,
        request: Request,
        bucket: str,
        quota: Quota,
        what: str,
        *,
        cost: int = 1,
        shown: bool = True,
    ) -> None:
        """Charge `cost` units; raise `RateLimitedError` (429) when they do not fit now, or
        `BatchExceedsRateError` (422) when they never could; else note the headers (`shown`)."""
        if cost > quota.limit:
            raise BatchExceedsRateError(
                f"{cost} texts cost more than this {what}'s whole rate of {quota.limit} per"
                f" {quota.period_s:g} s; send at most {quota.limit} at a time",
                texts=cost,
                limit=quota.limit,
                period_s=quota.period_s,
            )
        decision = await self.hit(bucket, quota, cost)
        if not decision.allowed:
            scope = bucket.split(":", 1)[0]  # "key", "user" or "addr"; the rest is the bucket
            self.metrics.rate_limited.inc(tags={"scope": scope})
            log.info("rate_limited", scope=scope, limit=quota.limit, cost=cost)
            headers = decision.headers()
            raise RateLimitedError(
                f"too many requests for this {what}; retry after {headers['Retry-After']} s",
                headers=headers,
                limit=quota.limit,
                period_s=quota.period_s,
                scope=what,
                cost=cost,
            )
        if not shown:
            return
        # The tighter of the key's and the user's buckets is what the client should see.
        previous: Decision | None = getattr(request.state, "ratelimit", None)
        if previous is None or decision.remaining < previous.remaining:
            request.state.ratelimit = decision


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RateLimitHeaders(HttpMiddleware):
    """Add the `RateLimit-*` headers of the request's tightest bucket to its response."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:

        async def send_with_headers(message: Message) -> None:
            decision = scope.get("state", {}).get("ratelimit")
            if message["type"] == "http.response.start" and isinstance(decision, Decision):
                headers = MutableHeaders(scope=message)
                for name, value in decision.headers().items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
