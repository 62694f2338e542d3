"""Export: BN folding is exact, every architecture's ONNX reproduces PyTorch in onnxruntime,
TorchScript loads back, and the bytes are the same for the same weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from slimnet.console.errors import SlimnetError
from slimnet.deploy.exporters import export_bytes, export_file, onnx_bytes, run_onnx
from slimnet.nn.fold import fold_batchnorm
from slimnet.nn.network import Network
from slimnet.space.models import default_depth
from slimnet.space.names import ARCHS
from slimnet.space.spec import uniform_spec
from slimnet.training.trained import load_trained

REPO = Path(__file__).resolve().parents[1]


def small_spec(arch: str):
    """One block per stage, narrow, 32 px: every layer type of the architecture, in milliseconds."""
    depth = tuple(1 for _ in default_depth(arch))
    return uniform_spec(arch, 0.25, resolution=32, num_classes=10, in_channels=3, depth=depth, divisor=4)


def with_random_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """BN statistics and affine terms far from identity, so folding them wrongly shows."""
    generator = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=generator))
            m.running_var.copy_(torch.rand(n, generator=generator) * 2 + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.randn(n, generator=generator))
                m.bias.copy_(torch.randn(n, generator=generator))
    return model.eval()


def trained_like(arch: str) -> tuple[Network, object]:
    spec = small_spec(arch)
    torch.manual_seed(0)
    return with_random_bn(Network(spec.blueprint())), spec


@pytest.mark.parametrize("arch", ARCHS)
def test_onnx_of_every_architecture_matches_pytorch(arch, single_thread):
    model, spec = trained_like(arch)
    data = onnx_bytes(model, spec)
    import onnx  # here, not at collection: 1.4 s of each xdist worker's start

    graph = onnx.load_from_string(data).graph
    ops = {node.op_type for node in graph.node}
    assert "BatchNormalization" not in ops and "Conv" in ops
    x = torch.randn(3, spec.in_channels, spec.resolution, spec.resolution, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = model(x)
    got = run_onnx(data, x)  # batch 3: the batch axis is dynamic (exported with batch 1)
    assert got.shape == expected.shape == (3, 10)
    assert torch.allclose(got, expected, atol=1e-4, rtol=1e-3), float((got - expected).abs().max())
    assert expected.std() > 0.1  # logits that vary: the comparison is not between constants


def test_bn_folding_leaves_outputs_unchanged(single_thread):
    model, spec = trained_like("resnet18")  # projection shortcuts: BN after a conv in a second branch too
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) > 0  # the original is untouched
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-5, rtol=1e-4)
        # Folding used the BN statistics: the same convs without BN give something else.
        plain = fold_batchnorm(with_random_bn(Network(spec.blueprint()), seed=7))
        plain.load_state_dict(folded.state_dict())
        assert torch.equal(plain(x), folded(x))
        assert not torch.allclose(model(x), with_random_bn(model, seed=9)(x), atol=1e-2)


def test_same_weights_same_bytes_and_torchscript_loads(tmp_path, single_thread):
    model, spec = trained_like("mobilenet_v2")
    assert onnx_bytes(model, spec) == onnx_bytes(model, spec)
    # TorchScript mangles class names with a process-wide counter: byte equality holds across fresh
    # processes (the export stage), checked by forcing the stage in tests/test_pipeline.py.
    summary = export_file(model, spec, "torchscript", tmp_path / "m.torchscript.pt")
    ts = (tmp_path / "m.torchscript.pt").read_bytes()
    assert summary["bytes"] == len(ts) and summary["max_abs_error"] < 1e-4
    assert b"/work" not in ts and b".debug_pkl" not in ts  # no checkout paths inside
    loaded = torch.jit.load(str(tmp_path / "m.torchscript.pt"))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-4, rtol=1e-3)


def test_export_refuses_a_model_of_another_spec(tmp_path):
    model, spec = trained_like("mobilenet_v1")
    path = tmp_path / "model.pt"
    torch.save({"spec": spec.model_dump(mode="json"), "model": model.state_dict()}, path)
    loaded = load_trained(spec, path)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    other = uniform_spec("mobilenet_v1", 0.5, resolution=32, num_classes=10, depth=spec.depth, divisor=4)
    with pytest.raises(SlimnetError, match="other channels than the spec"):
        load_trained(other, path)
    with pytest.raises(SlimnetError, match="--format"):
        export_bytes(model, spec, "tflite")


def test_export_command_writes_a_checked_file_and_rejects_bad_input(tmp_path):
    from typer.testing import CliRunner

    from slimnet.cli import app
    from slimnet.space.spec import save_spec

    model, spec = trained_like("mnasnet")
    save_spec(spec, tmp_path / "spec.json")
    torch.save({"spec": spec.model_dump(mode="json"), "model": model.state_dict()}, tmp_path / "model.pt")
    runner = CliRunner()
    ok = runner.invoke(app, ["export", str(tmp_path / "spec.json"), str(tmp_path / "model.pt")])
    assert ok.exit_code == 0, ok.output
    data = (tmp_path / "model.onnx").read_bytes()  # the default --out: beside the model
    assert data == onnx_bytes(model, spec) and "max |onnx - PyTorch|" in ok.stdout
    bad = runner.invoke(
        app,
        ["export", str(tmp_path / "spec.json"), str(tmp_path / "model.pt"), "--format", "tflite", "--out", str(tmp_path / "x")],
    )
    assert bad.exit_code == 2 and "--format 'tflite'" in bad.stderr and not (tmp_path / "x").exists()
    half = runner.invoke(app, ["export", str(tmp_path / "spec.json")])
    assert half.exit_code == 2 and "both SPEC and MODEL" in half.stderr


def test_torchscript_archive_id_comes_from_the_contents(tmp_path):
    """torch numbers each archive with an id drawn once per process (two runs of the export stage
    an hour apart differed only there); the export derives it from the archive's contents."""
    import io
    import zipfile

    from slimnet.deploy.exporters import stable_archive

    model, spec = trained_like("mobilenet_v2")
    raw = io.BytesIO()
    torch.jit.save(torch.jit.trace(model, torch.randn(1, 3, 32, 32)), raw)

    def with_id(archive: bytes, new_id: bytes) -> bytes:
        source, out = zipfile.ZipFile(io.BytesIO(archive)), io.BytesIO()
        with zipfile.ZipFile(out, "w") as target:
            for entry in source.infolist():
                target.writestr(entry, new_id if entry.filename.endswith(".data/serialization_id") else source.read(entry))
        return out.getvalue()

    first, second = (stable_archive(with_id(raw.getvalue(), i)) for i in (b"1111", b"2222"))
    assert first == second and b"1111" not in first
    (tmp_path / "m.pt").write_bytes(first)
    loaded = torch.jit.load(str(tmp_path / "m.pt"))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
