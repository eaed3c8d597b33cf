"""The numeric precision a model runs in: float32, or autocast to bfloat16 / float16.

One meaning for inference (``--precision``, ``Predictor(precision=)``, ``evaluate(precision=)``) and for
training (``train.amp``): ``auto`` is bfloat16 where the hardware computes it (CUDA GPUs that support it;
CPUs with AVX-512 BF16 or AMX), float16 on older CUDA GPUs, and float32 elsewhere, where bfloat16 would
be emulated and slower than float32. Under autocast the convolutions and matrix products run in the
reduced precision; the heads return float32 (:func:`maskrcnn.modeling.layers.full_precision`), so boxes,
scores and masks always come back in float32.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["PRECISIONS", "Precision", "cpu_has_native_bf16", "resolve_precision"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX-512 BF16 or AMX), where bf16 autocast pays:
    elsewhere it is emulated and slower than float32."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # private helpers of torch.cpu: absent in some versions
        return False


@dataclass(frozen=True)
class Precision:
    """A resolved precision on one device.

    Attributes:
        name: ``fp32``, ``bf16`` or ``fp16``.
        device_type: ``cpu``, ``cuda``, ``mps``...
        reason: why ``auto`` chose it (empty when it was asked for by name).
    """

    name: str
    device_type: str
    reason: str = ""

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES[self.name]

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The context to run the model in: ``torch.autocast`` to :attr:`dtype`, or nothing for fp32."""
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def describe(self) -> str:
        """``"bf16 (auto: this CPU computes bfloat16 in hardware)"``: what is printed once per command."""
        return f"{self.name} (auto: {self.reason})" if self.reason else self.name


def resolve_precision(name: str, device: torch.device | str) -> Precision:
    """``auto``, ``fp32``, ``bf16`` or ``fp16`` on ``device`` -> a :class:`Precision`.

    Raises:
        ValueError: an unknown name, fp16 off CUDA (CPUs have no fast float16 path; use bf16), or bf16
            on a CUDA GPU without it.
    """
    device = torch.device(device)
    text = str(name).strip().lower()
    if text not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}: use {', '.join(PRECISIONS)}")
    kind = device.type
    if text == "auto":
        if kind == "cuda":
            if torch.cuda.is_bf16_supported():
                return Precision("bf16", kind, "this GPU computes bfloat16")
            return Precision("fp16", kind, "this GPU has no bfloat16")
        if kind == "cpu" and cpu_has_native_bf16():
            return Precision("bf16", kind, "this CPU computes bfloat16 in hardware")
        why = "this CPU has no bfloat16 in hardware" if kind == "cpu" else f"on {kind}"
        return Precision("fp32", kind, why)
    if text == "fp16" and kind != "cuda":
        raise ValueError(f"precision fp16 needs a CUDA GPU (the model runs on {kind}); use bf16 or fp32")
    if text == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("precision bf16 is not supported by this GPU; use fp16 or fp32")
    if text == "bf16" and kind not in ("cpu", "cuda"):
        raise ValueError(f"precision bf16 is not supported on {kind}; use fp32")
    return Precision(text, kind)
