"""One arm of an alternating A/B run: deploy one path batched, measure c=1 and c=32 and the
CPU per request per process, print one JSON line with the load average.

    python -m bench.ab en_int8 --seconds 3 [--batch-wait 0.001] [--no-access-log]
        [--replicas 1 --threads 2] [--max-batch 32] [--gather-texts 8]

Run it alternately on the two versions of the code (A, B, A, B) so that a neighbour's load
falls on both arms; BENCHMARKS.md keeps what each change bought.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import typer

from bench.paths import PATHS
from bench.versus import project_arm


def main(
    path: str,
    seconds: float = 3.0,
    batch_wait: float | None = None,
    access_log: bool = True,
    replicas: int | None = None,
    threads: int | None = None,
    max_batch: int | None = None,
    gather_texts: int | None = None,
) -> None:
    spec = PATHS[path]
    changes = {
        "batch_wait_s": batch_wait,
        "replicas": replicas,
        "threads": threads,
        "max_batch": max_batch,
        "gather_texts": gather_texts,
    }
    spec = dataclasses.replace(spec, **{k: v for k, v in changes.items() if v is not None})
    common = {} if access_log else {"logging_config": {"enable_access_log": False}}
    arm = project_arm(spec, seconds, common)
    out = {
        "path": path,
        "batch_wait_s": spec.batch_wait_s,
        "replicas": spec.replicas,
        "threads": spec.threads,
        "max_batch": spec.max_batch,
        "gather_texts": spec.gather_texts,
        "access_log": access_log,
        **{k: arm[k] for k in ("c1_p50_ms", "c1_tps", "c32_tps", "cpu_ms_per_request")},
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    typer.run(main)
