"""How a torch model runs on a GPU: `device: cuda` with `precision` fp32, fp16 or bf16.

A replica placed on a GPU node (fractional `num_gpus` in serve_config.production-gpu.yaml)
gets its GPU from Ray through CUDA_VISIBLE_DEVICES. Without a CUDA build of torch or without a
visible GPU the replica fails at load, naming the model and what is missing, rather than
quietly running on the CPU at a fraction of the planned throughput.
"""

from __future__ import annotations

from typing import Any

from serve_app.errors import ModelLoadError

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def require_cuda(where: str) -> None:
    """Raise `ModelLoadError` unless torch can see a CUDA GPU."""
    import torch

    if torch.cuda.is_available():
        return
    build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
    raise ModelLoadError(
        f"{where}: `device: cuda` but no CUDA GPU is visible (torch {torch.__version__}, {build});"
        " run it on a GPU node with the `gpu` image, or set `device: cpu`"
    )


def prepare_cuda(model: Any, precision: str) -> Any:
    """Return `model` in eval mode on the GPU at `precision`."""
    import torch

    return model.eval().to(device="cuda", dtype=getattr(torch, DTYPES[precision]))
