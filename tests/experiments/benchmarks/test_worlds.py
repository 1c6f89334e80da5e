import torch

from experiments.benchmarks.worlds import frozen_networks, synthetic_batch, world_config


def test_random_weight_world_networks():
    """The paper's world without its files: config-f generator, IR-SE50 and AlexNet LPIPS, random weights."""
    cfg = world_config("256", ["ablation=pretrained_id"])
    assert cfg.model.identity_init == "random" and cfg.generator.size == 256
    generator, latent_avg, arcface, perceptual = frozen_networks(cfg, torch.device("cpu"))
    assert generator.n_latent == 14 and latent_avg.shape == (512,)
    assert sum(p.numel() for p in arcface.parameters()) > 40e6  # IR-SE50's size, not a toy one
    assert not any(p.requires_grad for p in generator.parameters())
    batch = synthetic_batch(cfg, 2, torch.device("cpu"))
    assert batch["contour"].shape == (2, 3, 256, 256) and batch["target"].shape == (2, 3, 256, 256)
    assert batch["identity"].min() >= -1 and batch["identity"].max() <= 1
    assert perceptual(batch["identity"], batch["identity"]).abs().max() < 1e-6
