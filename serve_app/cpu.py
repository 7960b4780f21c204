"""How a torch model runs on CPU: `precision` fp32 (through oneDNN) or int8 (dynamic).

fp32: torch's dense `Linear` calls MKL's sgemm, which on the AMD EPYC cores we run on is two
to three times slower than oneDNN's kernels for the same fp32 arithmetic (`happykube bench`
measures both). `torch.utils.mkldnn.to_mkldnn` swaps every `Linear` for oneDNN's; the outputs
match the dense ones to about 1e-7. A model spec's `onednn: false` keeps the stock kernels.

int8: `quantize_dynamic` stores `Linear` weights as int8 and quantises activations per batch
(fbgemm, VNNI instructions where the CPU has them). Faster again, at a small accuracy cost:
models/*/README.md and BENCHMARKS.md report the change on the evaluation sets.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any, Literal

Precision = Literal["fp32", "int8"]


def prepare(model: Any, precision: Precision, *, onednn: bool = True) -> Any:
    """Return `model` (in eval mode) ready for CPU inference at `precision`."""
    import torch

    model.eval()
    if precision == "int8":
        with warnings.catch_warnings():
            # torch.ao's eager quantisation is deprecated in favour of torchao, a dependency we
            # do not need for this one call; the call itself still works as documented.
            warnings.simplefilter("ignore")
            return torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
                model, {torch.nn.Linear}, dtype=torch.qint8
            )
    if onednn and torch.backends.mkldnn.is_available():  # type: ignore[no-untyped-call]
        from torch.utils.mkldnn import to_mkldnn

        return to_mkldnn(model)  # type: ignore[no-untyped-call]
    return model


def set_threads(n: int) -> None:
    """Give torch `n` intra-op threads, if this process uses torch at all, and numpy's BLAS `n`.

    Replicas of the built-in models never import torch (their sentence encoder runs in numpy):
    the import costs seconds of CPU per replica at start and about 300 MB of memory. Their
    matmuls run in numpy's BLAS, whose thread pool is capped here the same way.
    """
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]  # no stubs

    threadpool_limits(limits=n, user_api="blas")
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(n)
