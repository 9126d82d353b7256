"""Float32 CPU translation with oneDNN matrix products where MKL is slow (non-Intel CPUs).

torch's CPU build runs `nn.Linear` through MKL's sgemm. MKL picks its fastest code only on
Intel CPUs: on an AMD EPYC with AVX-512 it reached ~100 GFLOP/s on one thread for the
decoder's (400 x 256) x (256 x 1024) products, where oneDNN, which torch also ships, reached
~225 (scripts/bench_gemm.py, docs/benchmarks.md). CTranslate2 makes the same choice: MKL on
Intel, oneDNN elsewhere.

`--cpu-gemm auto` (translate's default) therefore switches every `nn.Linear` of a float32 CPU
model to oneDNN when the CPU is not Intel, and leaves torch's default elsewhere. The numbers
are those of the same product summed in another order: outputs can differ from the default
path in the last bits, so a near-tie between two tokens can, rarely, go the other way.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from transformer_mt.model.transformer import Transformer

CPU_GEMMS = ("auto", "default", "onednn")


def onednn_linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """`F.linear` computed by oneDNN (the op torch's own compiler uses on CPU); no gradient."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class OneDNNLinear(nn.Linear):
    """`nn.Linear` whose product runs in oneDNN; same parameters, inference only."""

    def forward(self, x: Tensor) -> Tensor:
        return onednn_linear(x, self.weight, self.bias)


def cpu_vendor() -> str:
    """The x86 vendor id (`GenuineIntel`, `AuthenticAMD`, ...), or "" where unknown."""
    try:
        with Path("/proc/cpuinfo").open(encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def resolve_cpu_gemm(choice: str) -> str:
    """`auto` -> `onednn` on a known non-Intel x86 CPU with oneDNN in torch, else `default`."""
    if choice not in CPU_GEMMS:
        raise ValueError(f"unknown CPU GEMM {choice!r}; choose one of {CPU_GEMMS}")
    if choice != "auto":
        return choice
    vendor = cpu_vendor()
    fast_elsewhere = vendor not in ("", "GenuineIntel") and torch.backends.mkldnn.is_available()
    return "onednn" if fast_elsewhere else "default"


def use_onednn(model: Transformer) -> Transformer:
    """Switch every `nn.Linear` of a float32 CPU model to `OneDNNLinear`, in place (tied
    models first get their own output projection); returns the model, in eval mode."""
    if not torch.backends.mkldnn.is_available():
        raise ValueError("this torch build has no oneDNN (mkldnn)")
    if next(model.parameters()).device.type != "cpu":
        raise ValueError("oneDNN products are for the CPU")
    model.eval()
    model.untie_output_projection()
    for module in model.modules():
        if type(module) is nn.Linear:
            # Same parameters and state-dict keys; only forward changes.
            module.__class__ = OneDNNLinear
    return model


def apply_cpu_gemm(model: Transformer, choice: str) -> str:
    """Resolve `choice` on this CPU and give a float32 CPU model those products, in place;
    returns the kernel used (`default` or `onednn`)."""
    kernel = resolve_cpu_gemm(choice)
    if kernel == "onednn":
        use_onednn(model)
    return kernel

