"""The toy ArcFaces: the margin head, training that lowers the loss, checkpoint + resume equal to an
uninterrupted run, and exports that load back strictly (safetensors through the ID-loss loader, ONNX
through insightface)."""

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from experiments.toy_pretraining.arcface import ARCFACES, ArcFaceONNXInput, ArcMarginHead, export_arcface, train_arcface

TINY_ARC = replace(
    ARCFACES["toy_eval_arcface"],
    stage_channels=(8, 12, 16, 24),
    stage_units=(1, 1, 1, 1),
    image_size=64,  # a tiny network's few steps at fixed sizes, whatever the shipped world's
    embedding_dim=16,
    n_identities=4,
    batch_size=8,
    steps=12,
    lr=3e-3,
    margin=0.0,
    ckpt_every=4,
    eval_every=1000,
    eval_identities=10,
)


def test_margin_lowers_only_the_true_class_logit():
    head = ArcMarginHead(8, 5, scale=10.0)
    emb = F.normalize(torch.randn(4, 8), dim=1)
    labels = torch.tensor([0, 1, 2, 3])
    plain, margin = head(emb, labels, 0.0), head(emb, labels, 0.5)
    true = F.one_hot(labels, 5).bool()
    assert (margin[true] < plain[true]).all()
    assert torch.allclose(margin[~true], plain[~true])
    assert torch.allclose(plain, 10 * emb @ F.normalize(head.weight, dim=1).t(), atol=1e-5)


@pytest.mark.slow
def test_arcface_trains_resumes_and_exports(tmp_path):
    net, out = train_arcface(TINY_ARC, tmp_path / "a", progress=False)
    losses = out["losses"]
    assert len(losses) == 12 and np.mean(losses[-3:]) < np.mean(losses[:3])
    assert 0.0 <= out["report"]["verification_acc"] <= 1.0 and "lr_sim_same" in out["report"]
    # interrupted at step 6 (checkpoint), then resumed: the same weights as one run
    _, first = train_arcface(TINY_ARC, tmp_path / "b", progress=False, stop_at=6)
    assert len(first["losses"]) == 6 and first["report"] == {}
    resumed, second = train_arcface(TINY_ARC, tmp_path / "b", progress=False)
    assert len(second["losses"]) == 6
    for (k, v), w in zip(net.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(v.float(), w.float(), atol=1e-5), k

    paths = export_arcface(net, "tiny_arc", tmp_path / "out")
    from models.irse import load_arcface

    loaded = load_arcface(paths["safetensors"])
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    assert torch.allclose(loaded(x), net(x), atol=2e-2)  # fp16 weights
    import insightface

    model = insightface.model_zoo.get_model(str(paths["onnx"]), providers=["CPUExecutionProvider"])
    assert type(model).__name__ == "ArcFaceONNX" and model.input_size == (112, 112)
    x112 = F.interpolate(x, size=(112, 112), mode="bilinear", align_corners=False)
    onnx_emb = torch.from_numpy(model.forward(((x112 + 1) * 127.5).numpy().astype(np.float32)))
    assert torch.allclose(onnx_emb, ArcFaceONNXInput(loaded)(x112), atol=1e-4)


@pytest.mark.cuda
def test_arcface_trains_on_cuda_like_on_cpu(tmp_path):
    """Same codes on either device (drawn on the CPU), so a few steps land on nearly the same losses."""
    arc = replace(TINY_ARC, steps=4)
    _, cpu_out = train_arcface(arc, tmp_path / "cpu", progress=False)
    _, gpu_out = train_arcface(arc, tmp_path / "gpu", progress=False, device="cuda")
    assert np.allclose(cpu_out["losses"], gpu_out["losses"], rtol=1e-2)
