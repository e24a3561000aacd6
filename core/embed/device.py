"""Where the network runs: the CPU (OpenVINO or PyTorch) or a CUDA GPU (PyTorch).

"auto" takes the GPU when PyTorch sees one, since a GPU embeds a gallery many times faster than
two CPU cores; ``--device`` forces either. The device is not part of the embedding config:
float32 on a GPU (TF32 switched off) gives the CPU's descriptors, so caches are shared.
"""
from __future__ import annotations

import importlib.util

DEVICES = ("auto", "cpu", "cuda")
GPU_BATCH = 32        # images of one shape per GPU batch: enough to fill a GPU at longer side 512
GPU_WORKERS = 4       # decoding threads that keep a GPU fed (one thread cannot decode 100+ img/s)


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(requested: str, has_cuda: bool) -> str:
    """"cpu" or "cuda" for a requested device ("auto", "cpu", "cuda" or "cuda:N"); asking for a
    GPU that PyTorch cannot see is an error, not a silent fall back to the CPU."""
    if requested == "auto":
        return "cuda" if has_cuda else "cpu"
    if requested == "cpu":
        return "cpu"
    if requested == "cuda" or requested.startswith("cuda:"):
        if not has_cuda:
            raise ValueError(f"device {requested!r} asked for, but PyTorch sees no CUDA GPU "
                             "(torch.cuda.is_available() is False); use --device cpu or auto")
        return requested
    raise ValueError(f"device must be one of {DEVICES} or cuda:N, got {requested!r}")


def check_precision_on_device(precision: str, device: str) -> None:
    """int8 runs through OpenVINO on the CPU and float16 on a CUDA GPU only: this CPU family has no
    float16 units (OpenVINO would silently run bfloat16, measured at cosine 0.998 to float32).
    bf16 needs bfloat16 units: on the CPU, as OpenVINO reports them (``BF16`` among the CPU's
    ``OPTIMIZATION_CAPABILITIES``: AVX-512 BF16 or AMX), on a GPU as PyTorch does; without them it
    would be emulated, slower than float32, so it is refused with the reason."""
    if precision == "int8" and device != "cpu":
        raise ValueError("int8 inference runs through OpenVINO on the CPU; use --device cpu, or "
                         "--precision float16 on the GPU")
    if precision == "float16" and device == "cpu":
        raise ValueError("float16 inference needs a CUDA GPU (--device cuda); on a CPU use float32 or int8")
    if precision == "bf16" and not has_bfloat16_units(device):
        where = ("this CPU: OpenVINO lists no BF16 among its optimisation capabilities (AVX-512 BF16 or AMX)"
                 if device == "cpu" else f"GPU {device}: torch.cuda.is_bf16_supported() is False")
        raise ValueError(f"bf16 inference needs bfloat16 units, and {where}; use --precision float32 or int8")


def cpu_capabilities() -> tuple[str, ...]:
    """OpenVINO's ``OPTIMIZATION_CAPABILITIES`` of the CPU (``BF16`` when it has bfloat16 units);
    empty without OpenVINO."""
    if importlib.util.find_spec("openvino") is None:
        return ()
    import openvino as ov

    return tuple(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def has_bfloat16_units(device: str) -> bool:
    """Whether ``device`` computes in bfloat16 natively (CPU: as OpenVINO reports; GPU: PyTorch)."""
    if device == "cpu":
        return "BF16" in cpu_capabilities()
    import torch

    with torch.cuda.device(torch.device(device)):
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))


def device_name(device: str) -> str:
    """A readable name of the device ("cpu" or the GPU's model): what a float16 fidelity report is
    valid for."""
    if device == "cpu":
        return "cpu"
    import torch

    return torch.cuda.get_device_name(torch.device(device)).replace(" ", "_")
