"""RouterClient: the ingress's side of the language router, gathering concurrent requests.

Concurrent single-message requests are sent to the router together (`GatherArgs`): one router
call per language hint and client among them (the client keys the router's cache). A failed
call answers its requests with an error item, as the router does for a failed model; the
routes turn error items into named errors.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from ray import serve
from ray.serve.exceptions import RayServeException

from serve_app.errors import HappyKubeError, ModelUnavailableError, error_body
from serve_app.observability import carry_batch_request_ids, get_logger
from serve_app.schemas import EmotionResult, ErrorBody, Language

log = get_logger(__name__)

# One text's answer, as the router gives it: its result, or its own error.
Item = EmotionResult | ErrorBody


class RouterHandle(Protocol):
    """The part of the LanguageRouter's `DeploymentHandle` the ingress calls."""

    @property
    def analyze(self) -> Any: ...

    @property
    def ready(self) -> Any: ...


def _in_replica() -> bool:
    try:
        serve.get_replica_context()
    except RayServeException:
        return False
    return True


class RouterClient:
    """Calls the router for the ingress's routes; `one` gathers, `many` sends a batch as is."""

    def __init__(self, router: RouterHandle, *, max_texts: int, wait_s: float) -> None:
        self.router = router
        # `@serve.batch` needs a replica around it; the app driven in-process (tests) sends
        # each request alone, through the same `many` the gathered calls use.
        self.gathers = _in_replica()
        self._singles = 0  # single-message requests in flight in this replica
        self._gathered.set_max_batch_size(max_texts)
        self._gathered.set_batch_wait_timeout_s(wait_s)

    async def one(self, text: str, hint: Language | None, client: str) -> Item:
        """Analyse one text, gathered with the requests in flight beside it.

        A request alone skips the gather: no other would join it, so the gather's wait is
        pure latency (and the model's batch waits again). Under load they still gather.
        """
        self._singles += 1
        try:
            if self._singles == 1 or not self.gathers:
                try:
                    return (await self.many([text], hint, client))[0]
                except HappyKubeError as exc:
                    return error_body(exc)
            item: Item = await self._gathered((text, hint, client))
            return item
        finally:
            self._singles -= 1

    async def many(self, texts: list[str], hint: Language | None, client: str) -> list[Item]:
        """Analyse a batch of `client`'s in one router call; raise `ModelUnavailableError` if
        it fails."""
        try:
            with carry_batch_request_ids():  # a gathered call names every request it serves
                items: list[Item] = await self.router.analyze.remote(texts, hint, client=client)
        except Exception as exc:
            log.warning("router_failed", error=type(exc).__name__)
            raise ModelUnavailableError("the analysis service is unavailable") from exc
        return items

    async def ready(self, timeout_s: float = 5.0) -> dict[str, bool]:
        """Each model's readiness, as the router sees it."""
        models: dict[str, bool] = await asyncio.wait_for(self.router.ready.remote(), timeout_s)
        return models

    # Several gathered calls may be in flight at once: a gather waits on the router, not the CPU.
    # 16: with gathers of at most 16 texts, 4 in flight could not keep up with a steady half
    # of the peak load (en_int8 68.7 of 73 msg/s offered, p99 1011 ms; 16 in flight: 71.6,
    # 450 ms; en_fp32 p99 1067 -> 918 ms; Italian unchanged). Uncapped (64) was no better
    # than 4 on the slower machine (BENCHMARKS.md, 2026-11-26).
    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005, max_concurrent_batches=16)  # type: ignore[untyped-decorator]
    async def _gathered(self, requests: list[tuple[str, Language | None, str]]) -> list[Item]:
        by_call: dict[tuple[Language | None, str], list[int]] = {}
        for i, (_, hint, client) in enumerate(requests):
            by_call.setdefault((hint, client), []).append(i)
        groups = list(by_call.items())
        answers = await asyncio.gather(
            *(self.many([requests[i][0] for i in idx], *call) for call, idx in groups),
            return_exceptions=True,
        )
        out: list[Item | None] = [None] * len(requests)
        for (_, idx), answer in zip(groups, answers, strict=True):
            for pos, i in enumerate(idx):
                if isinstance(answer, HappyKubeError):
                    out[i] = error_body(answer)
                elif isinstance(answer, BaseException):
                    raise answer
                else:
                    out[i] = answer[pos]
        return [item for item in out if item is not None]
