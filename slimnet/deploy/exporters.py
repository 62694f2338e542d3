"""ONNX and TorchScript files of a trained plain network, BN folded, checked against PyTorch.

Both formats are built in memory, checked, and only then written (atomically): a file that
does not reproduce PyTorch's outputs is never left behind. Same weights -> same bytes:
ONNX from the TorchScript-based exporter is deterministic as it is; a TorchScript archive
holds debug records with absolute source paths, so they are dropped and the zip is rewritten
with fixed entry times (see :func:`torchscript_bytes`).
"""

from __future__ import annotations

import hashlib
import io
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from slimnet import atomic
from slimnet.console.errors import SlimnetError
from slimnet.nn.fold import fold_batchnorm
from slimnet.space.spec import ArchSpec

FORMATS = ("onnx", "torchscript")
SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
OPSET = 17
INPUT, OUTPUT = "images", "logits"
# Folding reorders float operations; logits of these networks agree to ~1e-5 in practice.
ATOL, RTOL = 1e-4, 1e-3
CHECK_BATCH = 4


def example_input(spec: ArchSpec, batch: int = 1, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, spec.in_channels, spec.resolution, spec.resolution, generator=generator)


def onnx_bytes(model: nn.Module, spec: ArchSpec) -> bytes:
    """ONNX (opset 17, dynamic batch) of the BN-folded network. The TorchScript-based exporter
    (``dynamo=False``) needs no onnxscript and writes the same bytes for the same weights."""
    folded = fold_batchnorm(model)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(
            folded,
            (example_input(spec),),
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
        )
    return buffer.getvalue()


def torchscript_bytes(model: nn.Module, spec: ArchSpec) -> bytes:
    """A frozen traced TorchScript archive of the BN-folded network, without debug records.

    ``*.debug_pkl`` entries hold source ranges with absolute paths of this checkout and of
    torch's install (different bytes on every machine); loading does not need them. The class
    name inside is mangled with a process-wide counter, so the same sequence of exports in a
    fresh process (what the export stage runs) gives the same bytes.
    """
    folded = fold_batchnorm(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notices
        # check_trace off: it re-traces to compare graphs (4x the time); max_error checks outputs instead.
        frozen = torch.jit.freeze(torch.jit.trace(folded, example_input(spec), check_trace=False))
        raw = io.BytesIO()
        torch.jit.save(frozen, raw)
    return stable_archive(raw.getvalue())


def stable_archive(raw: bytes) -> bytes:
    """A TorchScript zip with the same bytes for the same contents: no debug records, fixed
    entry times, and the archive id (torch draws one per process: the same weights saved by
    two runs of the stage differed only there) derived from the contents instead."""
    source = zipfile.ZipFile(io.BytesIO(raw))
    entries = [(e.filename, source.read(e)) for e in source.infolist() if not e.filename.endswith(".debug_pkl")]
    digest = hashlib.sha256(b"".join(name.encode() + data for name, data in entries if not _is_serialization_id(name)))
    stable_id = str(int(digest.hexdigest()[:32], 16)).encode()
    cleaned = io.BytesIO()
    with zipfile.ZipFile(cleaned, "w", zipfile.ZIP_STORED) as target:
        for name, data in entries:
            target.writestr(
                zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), stable_id if _is_serialization_id(name) else data
            )
    return cleaned.getvalue()


def _is_serialization_id(name: str) -> bool:
    return name.endswith("/.data/serialization_id")


def run_onnx(data: bytes, x: torch.Tensor) -> torch.Tensor:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # small checks; the machine may be shared
    session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run([OUTPUT], {INPUT: x.numpy()})[0])


def run_torchscript(data: bytes, x: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = torch.jit.load(io.BytesIO(data), map_location="cpu")
    with torch.no_grad():
        return loaded(x)


def max_error(data: bytes, fmt: str, model: nn.Module, spec: ArchSpec) -> float:
    """Largest |exported - PyTorch| over the logits of a random batch (BN unfolded on the PyTorch side)."""
    x = example_input(spec, CHECK_BATCH, seed=1)
    with torch.no_grad():
        reference = model.eval()(x)
    exported = run_onnx(data, x) if fmt == "onnx" else run_torchscript(data, x)
    if exported.shape != reference.shape:
        raise SlimnetError(f"exported {fmt} gives logits of shape {tuple(exported.shape)}, PyTorch {tuple(reference.shape)}")
    error = float((exported - reference).abs().max())
    bound = ATOL + RTOL * float(reference.abs().max())
    if not error <= bound:  # also catches NaN
        raise SlimnetError(f"exported {fmt} differs from PyTorch by {error:.3g} (bound {bound:.3g}); nothing written")
    return error


def export_bytes(model: nn.Module, spec: ArchSpec, fmt: str) -> tuple[bytes, float]:
    """The file's bytes and its checked max error against PyTorch."""
    if fmt not in FORMATS:
        raise SlimnetError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    data = onnx_bytes(model, spec) if fmt == "onnx" else torchscript_bytes(model, spec)
    return data, max_error(data, fmt, model, spec)


def export_file(model: nn.Module, spec: ArchSpec, fmt: str, path: Path) -> dict:
    """Export, check, write atomically; returns size and max error."""
    data, error = export_bytes(model, spec, fmt)
    atomic.write_bytes(path, data)
    return {"bytes": len(data), "max_abs_error": error}
