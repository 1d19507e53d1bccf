"""fid_dmgan against a straightforward rendering of DM-GAN's eval/FID steps: torchvision's
own Resize/ToTensor on PIL images, that code's per-channel scaling written out, the full
torchvision network with a hook on its average pool, np.mean/np.cov, and the Frechet
distance through the eigenvalues of sigma1 @ sigma2 (not scipy's sqrtm, which ours uses).
The weights: a random torchvision Inception v3 saved to a local file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torchvision import transforms

from attngan.checkpoint import CheckpointError
from attngan.config import ConfigError
from attngan.errors import DataError, SetupError
from attngan.evaluation.published import dmgan_statistics
from attngan.metrics import fid_dmgan


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=True)
    for bn in net.modules():  # running statistics of real inputs, so that the features are of order 1
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.reset_running_stats()
            bn.momentum = None
    with torch.no_grad():
        net.train()(torch.rand(4, 3, 299, 299) * 4 - 2)
    path = tmp_path_factory.mktemp("fid_dmgan") / fid_dmgan.WEIGHTS_FILE
    torch.save(net.state_dict(), path)
    return path, net.eval()


def _images(n: int, size: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, 3, size, size), dtype=np.uint8))


def _reference_features(net: torch.nn.Module, images: torch.Tensor) -> np.ndarray:
    """DM-GAN's loader and InceptionV3([3]) written out on the full torchvision network."""
    load = transforms.Compose([transforms.Resize((299, 299)), transforms.ToTensor()])
    x = torch.stack([load(Image.fromarray(im.permute(1, 2, 0).numpy())) for im in images])
    x = x.clone()
    x[:, 0] = x[:, 0] * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
    x[:, 1] = x[:, 1] * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
    x[:, 2] = x[:, 2] * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
    pooled = {}
    hook = net.avgpool.register_forward_hook(lambda module, inputs, output: pooled.update(out=output))
    with torch.no_grad():
        net(x)
    hook.remove()
    return pooled["out"].flatten(1).double().numpy()


def _reference_fid(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    eig = np.linalg.eigvals(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(eig.real, 0, None)).sum())


def test_features_follow_dmgan(weights):
    """pool3 features of three images equal the straightforward rendering (float32
    rounding); torch's resize, [-1, 1] input or torchvision's own transform_input would not."""
    path, net = weights
    images = _images(3, 72, seed=1)
    ours = fid_dmgan.load_dmgan_inception(path)(fid_dmgan.preprocess(images)).double().numpy()
    ref = _reference_features(net, images)
    assert ours.shape == (3, 2048) and ref.std() > 1e-3
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)


class _Pixels(torch.nn.Module):
    """A cheap stand-in for the network: the mean of each channel in 4x4 cells of the
    [0,1] input, projected to 12 dims ([N,12]), so that the statistics path runs on many images."""

    def __init__(self):
        super().__init__()
        self.proj = torch.randn(3 * 16, 12, generator=torch.Generator().manual_seed(2))

    def forward(self, x):
        return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1) @ self.proj


def test_statistics_and_distance_follow_dmgan():
    """Batches of 50 with the last partial one dropped (130 images -> 100), np.mean/np.cov,
    and the Frechet distance against the eigenvalue formula."""
    net = _Pixels()
    fake, real = _images(130, 16, seed=3), _images(120, 16, seed=4).clamp(max=200)
    batches = [fake[i : i + 7] for i in range(0, 130, 7)]  # arrival in odd-sized batches
    mu, sigma, used = dmgan_statistics(net, batches, torch.device("cpu"))
    assert used == 100
    with torch.no_grad():
        f = net(fid_dmgan.preprocess(fake[:100])).double().numpy()
        r = net(fid_dmgan.preprocess(real[:100])).double().numpy()
    np.testing.assert_allclose(mu, f.mean(0), rtol=1e-10)
    np.testing.assert_allclose(sigma, np.cov(f, rowvar=False), rtol=1e-8, atol=1e-12)
    mu_r, sigma_r, _ = dmgan_statistics(net, [real], torch.device("cpu"))
    ours = fid_dmgan.frechet_distance(mu_r, sigma_r, mu, sigma)
    assert ours == pytest.approx(_reference_fid(r, f), rel=1e-6) and ours > 1e-3


def test_statistics_file_round_trip_and_bad_files(tmp_path):
    mu, sigma = np.arange(2048.0), np.eye(2048)
    fid_dmgan.save_statistics(tmp_path / "bird_val.npz", mu, sigma, 3)
    got = fid_dmgan.load_statistics(tmp_path / "bird_val.npz")
    assert np.array_equal(got[0], mu) and np.array_equal(got[1], sigma)
    np.savez(tmp_path / "no_sigma.npz", mu=mu)
    with pytest.raises(DataError, match="no_sigma.npz: no sigma array"):
        fid_dmgan.load_statistics(tmp_path / "no_sigma.npz")
    (tmp_path / "text.npz").write_text("not numpy")
    with pytest.raises(DataError, match="not an .npz"):
        fid_dmgan.load_statistics(tmp_path / "text.npz")
    with pytest.raises(SetupError, match="absent.npz"):
        fid_dmgan.load_statistics(tmp_path / "absent.npz")


def test_missing_or_wrong_weights_are_one_clear_error(tmp_path):
    """Offline without the file: which file to bring and where; another network's file: said so."""
    with pytest.raises(ConfigError, match=f"EVAL.DMGAN_INCEPTION is empty.*{fid_dmgan.WEIGHTS_URL}"):
        fid_dmgan.load_dmgan_inception("")
    with pytest.raises(SetupError, match=f"absent.pth: no such file; download {fid_dmgan.WEIGHTS_URL}"):
        fid_dmgan.load_dmgan_inception(tmp_path / "absent.pth")
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not torchvision's Inception v3 weights"):
        fid_dmgan.load_dmgan_inception(tmp_path / "other.pth")
