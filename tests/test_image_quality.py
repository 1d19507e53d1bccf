from urllib.error import URLError

import numpy as np
import pytest
import scipy.linalg
import torch
import torch_fidelity.feature_extractor_inceptionv3 as tf_inception
from torch import nn
from torchmetrics.image.inception import InceptionScore

from attngan.metrics.image_quality import (
    INCEPTION_WEIGHTS_FILE,
    INCEPTION_WEIGHTS_URL,
    ImageQuality,
    InceptionWeightsError,
    frechet_distance,
    inception_score_from_probs,
    library_weights_path,
    load_inception,
    uint8_images,
)


class PixelFeatures(nn.Module):
    """A tiny stand-in for Inception: features = the pixels, logits = a random projection."""

    def __init__(self, pixels: int = 12, classes: int = 5):
        super().__init__()
        torch.manual_seed(0)
        self.classify = nn.Linear(pixels, classes)

    def forward(self, images):
        features = images.flatten(1).float()
        return features, self.classify(features / 255)


def random_images(n: int, low: int = 0, high: int = 200, seed: int = 0) -> torch.Tensor:
    return torch.randint(low, high, (n, 3, 2, 2), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def numpy_fid(fake: torch.Tensor, real: torch.Tensor) -> float:
    """Reference: the TTUR formula with numpy's mean/cov and scipy's matrix square root."""
    f, r = fake.flatten(1).double().numpy(), real.flatten(1).double().numpy()
    s1, s2 = np.cov(f, rowvar=False), np.cov(r, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((f.mean(0) - r.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_frechet_distance_diagonal_by_hand():
    # |m1-m2|^2 = 1+4+4 = 9; diagonal covariances: sum (sqrt(s1)-sqrt(s2))^2 = (1-2)^2+(2-1)^2+(3-3)^2 = 2
    fid = frechet_distance([0, 0, 0], np.diag([1.0, 4, 9]), [1, 2, 2], np.diag([4.0, 1, 9]))
    assert fid == pytest.approx(11.0, rel=1e-12)


def test_frechet_distance_shifted_and_scaled_gaussian():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 6))
    sigma, mu, shift, scale = a @ a.T + np.eye(6), rng.normal(size=6), rng.normal(size=6), 1.7
    # N(mu, S) vs N(mu + d, c^2 S): (S c^2 S)^(1/2) = c S, so FID = |d|^2 + (1 - c)^2 tr(S)  (by hand)
    expected = (shift**2).sum() + (1 - scale) ** 2 * np.trace(sigma)
    assert frechet_distance(mu, sigma, mu + shift, scale**2 * sigma) == pytest.approx(expected, rel=1e-9)
    # a general pair against scipy's matrix square root
    b = rng.normal(size=(6, 6))
    other = b @ b.T + 0.5 * np.eye(6)
    reference = (shift**2).sum() + np.trace(sigma + other - 2 * scipy.linalg.sqrtm(sigma @ other).real)
    assert frechet_distance(mu, sigma, mu + shift, other) == pytest.approx(reference, rel=1e-9)


def test_inception_score_golden_values():
    k = 4
    assert inception_score_from_probs(torch.full((40, k), 1 / k), splits=10) == pytest.approx((1.0, 0.0))
    one_hot = torch.eye(k).repeat(10, 1)  # every split of 4 consecutive rows holds each class once
    assert inception_score_from_probs(one_hot, splits=10) == pytest.approx((k, 0.0))
    # two images [1,0] and [.5,.5]: p(y) = [.75,.25], KL = log(4/3) and log(4/3)/2 -> IS = (4/3)^(3/4)  (by hand)
    assert inception_score_from_probs(torch.tensor([[1.0, 0.0], [0.5, 0.5]]), splits=1)[0] == pytest.approx(
        (4 / 3) ** 0.75
    )
    # consecutive splits and the population std: a uniform half (IS 1) then a one-hot half (IS k)
    halves = torch.cat([torch.full((k, k), 1 / k), torch.eye(k)])
    assert inception_score_from_probs(halves, splits=2) == pytest.approx(((1 + k) / 2, (k - 1) / 2))


@pytest.mark.filterwarnings("ignore::UserWarning")  # its memory notice, and the std of a single split
def test_inception_score_agrees_with_torchmetrics_on_one_split():
    logits = torch.randn(50, 7, generator=torch.Generator().manual_seed(1)) * 3
    library = InceptionScore(feature=nn.Identity(), splits=1)  # one split: its shuffling cannot matter
    library.update(logits)
    mean, _ = inception_score_from_probs(logits.double().softmax(1), splits=1)
    assert mean == pytest.approx(library.compute()[0].item(), rel=1e-5)


def test_to_uint8_truncates_like_the_original():
    # uint8((x + 1) * 127.5): -1 -> 0, -0.5 -> 63.75 -> 63, 0 -> 127.5 -> 127, 1 -> 255
    images = torch.tensor([-1.0, -0.5, 0.0, 1.0]).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    assert uint8_images(images)[0, 0].flatten().tolist() == [0, 63, 127, 255]
    with pytest.raises(ValueError, match=r"\[N,3,H,W\]"):
        uint8_images(torch.zeros(2, 1, 4, 4))


def test_accumulator_fid_against_independent_statistics():
    real, fake = random_images(64, seed=1), random_images(48, high=150, seed=2)
    quality = ImageQuality(metrics={"fid"}, feature_extractor=PixelFeatures())
    for batch in real.split(20):
        quality.update_real(batch)
    for batch in fake.split(20):
        quality.update_fake(batch)
    result = quality.compute()
    assert set(result) == {"fid"}
    assert result["fid"] == pytest.approx(numpy_fid(fake, real), rel=1e-5)


def test_accumulator_fid_of_a_set_with_itself_and_shifted():
    real = random_images(64, high=100, seed=3)
    same = ImageQuality(metrics={"fid"}, feature_extractor=PixelFeatures())
    same.update_real(real)
    same.update_fake(real)
    assert abs(same.compute()["fid"]) < 1e-6 * real.double().var(0).sum().item()
    shifted = ImageQuality(metrics={"fid"}, feature_extractor=PixelFeatures())
    shifted.update_real(real)
    shifted.update_fake(real + 10)
    # same covariance, means 10 apart in each of 12 pixels: FID = 12 * 10^2  (by hand)
    assert shifted.compute()["fid"] == pytest.approx(1200.0, rel=1e-5)


def test_accumulator_inception_score_and_float_input():
    images = torch.rand(40, 3, 2, 2, generator=torch.Generator().manual_seed(4)) * 2 - 1
    extractor = PixelFeatures()
    quality = ImageQuality(metrics={"is"}, splits=4, feature_extractor=extractor)
    quality.update_real(images)  # nothing to do without FID
    for batch in images.split(16):
        quality.update_fake(batch)
    result = quality.compute()
    assert set(result) == {
        "inception_score_mean",
        "inception_score_std",
        "inception_score_star_mean",
        "inception_score_star_std",
    }
    logits = extractor(uint8_images(images))[1].double()
    expected = inception_score_from_probs(logits.softmax(1), splits=4)
    assert (result["inception_score_mean"], result["inception_score_std"]) == pytest.approx(expected)
    assert 1.0 < result["inception_score_mean"] < 5.0
    # TISE's IS* (COCO): the logits divided by its temperature 0.9091363549232483, a sharper softmax
    star = inception_score_from_probs((logits / 0.9091363549232483).softmax(1), splits=4)
    assert (result["inception_score_star_mean"], result["inception_score_star_std"]) == pytest.approx(star)
    assert result["inception_score_star_mean"] > result["inception_score_mean"]


def test_unknown_metric_is_refused():
    with pytest.raises(ValueError, match="kid"):
        ImageQuality(metrics={"is", "kid"}, feature_extractor=PixelFeatures())


def test_cached_real_statistics_give_the_same_fid(tmp_path):
    real, fake = random_images(64, seed=5), random_images(32, seed=6)
    first = ImageQuality(metrics={"fid"}, feature_extractor=PixelFeatures())
    first.update_real(real)
    first.update_fake(fake)
    path = tmp_path / "birds_test_256.npz"
    first.save_real_statistics(path)
    second = ImageQuality(metrics={"fid"}, feature_extractor=PixelFeatures())
    second.load_real_statistics(path)
    second.update_fake(fake)
    assert second.compute()["fid"] == pytest.approx(first.compute()["fid"], rel=1e-6)
    assert np.allclose(np.load(path)["sigma"], np.cov(real.flatten(1).double().numpy(), rowvar=False))


def test_offline_without_weights_gives_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tf_inception, "load_state_dict_from_url", offline)
    with pytest.raises(InceptionWeightsError) as error:
        ImageQuality()
    message = str(error.value)
    assert INCEPTION_WEIGHTS_FILE == "weights-inception-2015-12-05-6726825d.pth"
    assert INCEPTION_WEIGHTS_URL in message and "EVAL.INCEPTION_WEIGHTS" in message
    assert str(tmp_path / "hub" / "checkpoints" / INCEPTION_WEIGHTS_FILE) == str(library_weights_path()) in message
    assert error.value.__suppress_context__  # no urllib traceback chained to it


def test_missing_or_unsafe_local_weights_are_named(tmp_path):
    missing = tmp_path / "nowhere" / INCEPTION_WEIGHTS_FILE
    with pytest.raises(InceptionWeightsError, match=str(missing)):
        load_inception(missing)
    unsafe = tmp_path / "not_weights.pth"
    torch.save({"net": PixelFeatures}, unsafe)  # a class, which a plain state_dict never holds
    with pytest.raises(InceptionWeightsError, match=str(unsafe)):
        load_inception(unsafe)


def test_whole_path_through_the_real_architecture(monkeypatch):
    """torch-fidelity's Inception with random weights: the outputs and sizes we rely on (IS
    only: FID's eigenvalues of a 2048x2048 matrix take ~20 s on two cores)."""
    monkeypatch.setattr(tf_inception, "load_state_dict_from_url", lambda *args, **kwargs: {})
    monkeypatch.setattr(tf_inception.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
    quality = ImageQuality(metrics={"is"}, splits=1)
    quality.update_fake(torch.rand(2, 3, 16, 16) * 2 - 1)
    assert quality.logits[0].shape == (2, 1008)  # the unbiased logits come second, after the pool features
    assert 1.0 - 1e-9 <= quality.compute()["inception_score_mean"] <= 2.0  # IS of n images lies in [1, n]
