"""The baseline: what a user would write instead of the project, served and measured in the
same run. One uvicorn process, FastAPI, the same predictor (`serve_app.models.load_predictor`:
same tokeniser, chunks and precision) and a 25-line asyncio micro-batcher.

`python -m bench.baseline PATH PORT` serves it; `measure_baseline` starts that process,
drives it with the bench's own client at 1 and 32 in flight and stops it.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pydantic import BaseModel

from bench.load import run_loop
from bench.paths import REPO, PathSpec, messages
from bench.procs import cpu_seconds, free_port, stop

MAX_BATCH = 32
WAIT_S = 0.005


class Body(BaseModel):
    text: str
    language: str | None = None


class MicroBatcher:
    """Requests queue up; one task takes up to `MAX_BATCH` of them (waiting at most `WAIT_S`
    for more after the first) and runs the model once, off the event loop."""

    def __init__(self, predict: Any) -> None:
        self.predict = predict
        self.queue: asyncio.Queue[tuple[str, asyncio.Future[Any]]] = asyncio.Queue()

    async def submit(self, text: str) -> Any:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((text, future))
        return await future

    async def run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            deadline = time.perf_counter() + WAIT_S
            while len(batch) < MAX_BATCH and (left := deadline - time.perf_counter()) > 0:
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), left))
                except TimeoutError:
                    break
            try:
                rows = await asyncio.to_thread(self.predict, [text for text, _ in batch])
            except Exception as exc:  # every waiter hears of the failure
                for _, future in batch:
                    future.set_exception(exc)
                continue
            for (_, future), row in zip(batch, rows, strict=True):
                future.set_result(row)


def build(path: PathSpec) -> Any:
    """The baseline's FastAPI app for `path`: key check aside, the project's request shape."""
    import torch
    from fastapi import FastAPI

    from bench.paths import load_path
    from serve_app.text import normalize

    torch.set_num_threads(2)
    predictors = load_path(path)

    def predict(texts: list[str]) -> list[dict[str, dict[str, float]]]:
        clean = [normalize(t) for t in texts]
        tables = [(p.name, p.labels, p.predict(clean).tolist()) for p in predictors]
        return [
            {name: dict(zip(labels, rows[i], strict=True)) for name, labels, rows in tables}
            for i in range(len(texts))
        ]

    batcher = MicroBatcher(predict)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(batcher.run())
        yield
        task.cancel()

    app = FastAPI(lifespan=lifespan)

    @app.post("/api/v1/emotion")
    async def emotion(body: Body) -> dict[str, Any]:
        return {"language": body.language, "models": await batcher.submit(body.text)}

    return app


def measure_baseline(path: PathSpec, seconds: float, timeout_s: float = 180.0) -> dict[str, Any]:
    """The baseline's c=1 and c=32 figures for `path` (c=32 with its CPU ms per request), its
    server started and stopped here."""
    import httpx

    port = free_port()
    proc = subprocess.Popen(  # noqa: S603  # this interpreter, our own module
        [sys.executable, "-m", "bench.baseline", path.name, str(port)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        start = time.perf_counter()
        while True:
            try:
                httpx.get(f"{url}/docs", timeout=1)
                break
            except httpx.HTTPError as exc:
                if proc.poll() is not None or time.perf_counter() - start > timeout_s:
                    raise RuntimeError(
                        f"the baseline server for {path.name} did not start"
                    ) from exc
                time.sleep(0.2)
        texts = messages(path.language)
        run_loop(url, texts, path.language, 4, 2.0)  # warm-up
        rows = {1: run_loop(url, texts, path.language, 1, seconds)}
        cpu_before = cpu_seconds(proc.pid)
        rows[32] = run_loop(url, texts, path.language, 32, seconds)
        answered = max(1, rows[32]["answered"])
        # The one process's CPU per answer at 32 in flight, beside the project's per process.
        rows[32]["cpu_ms_per_request"] = round(
            1000 * (cpu_seconds(proc.pid) - cpu_before) / answered, 2
        )
        return rows
    finally:
        stop(proc, 30)


if __name__ == "__main__":
    import uvicorn

    from bench.paths import PATHS

    uvicorn.run(
        build(PATHS[sys.argv[1]]), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning"
    )
