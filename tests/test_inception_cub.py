"""is_cub: the PyTorch port of StackGAN's CUB Inception v3 against TensorFlow itself (a
slim-named checkpoint that TensorFlow writes, restored through its moving averages as
inception_score.py does, converted by attngan-convert-inception), the protocol against a
plain NumPy computation of the script's steps, and the bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from attngan.checkpoint import CheckpointError
from attngan.config import ConfigError
from attngan.errors import OptionError, SetupError
from attngan.metrics import inception_cub
from attngan.metrics.convert_inception import main as convert_main
from attngan.metrics.inception_cub import CubInception, cub_inception_score, load_cub_inception, preprocess
from optional import need

CONVERT = "pip install -e '.[convert]'"


def _images(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, 3, size, size), dtype=np.uint8))


@pytest.fixture(scope="module")
def tf_reference(tmp_path_factory):
    """A V1 checkpoint (the format of the authors' model.ckpt-5000) written by TensorFlow,
    TensorFlow's logits for two images, and the file attngan-convert-inception makes of it."""
    need("tensorflow", CONVERT)
    import slim_inception_tf

    root = tmp_path_factory.mktemp("cub_inception")
    prefix = str(root / "model.ckpt-5000")
    slim_inception_tf.write_checkpoint(prefix, seed=3, version=1)
    inputs = preprocess(_images(2, size=96))
    logits = slim_inception_tf.tf_logits(prefix, inputs.permute(0, 2, 3, 1).numpy())
    out = root / "inception_cub.pth"
    assert convert_main(["--ckpt", prefix, "--out", str(out)]) == 0
    return prefix, inputs, logits, out


def test_converted_network_equals_tensorflow(tf_reference):
    """Same images, same checkpoint: our logits equal TensorFlow's to float32 rounding
    (measured: 1.2e-5 at logits of about 9). The checkpoint's raw variables differ from their
    moving averages, so converting the raw ones would fail here; so would pools that count
    TF SAME's padding, a missing or extra BN gamma/epsilon, a wrong branch order."""
    _, inputs, tf_logits, out = tf_reference
    net, digest = load_cub_inception(out)
    with torch.no_grad():
        ours = net(inputs).numpy()
    assert ours.shape == (2, 51)
    assert np.abs(tf_logits).max() > 1.0  # the activations survived 94 random layers
    np.testing.assert_allclose(ours, tf_logits, rtol=1e-4, atol=1e-4)
    assert (out.parent / "inception_cub.pth.sha256").read_text().split() == [digest, "inception_cub.pth"]


def test_checkpoint_missing_variables_is_one_line(tf_reference, tmp_path, capsys):
    """A checkpoint without the moving averages (or missing any variable): exit 2, one line
    naming what is missing, nothing written."""
    need("tensorflow", CONVERT)
    import slim_inception_tf as slim

    tf, v1 = slim.tf, slim.v1
    prefix = str(tmp_path / "raw.ckpt")
    with tf.Graph().as_default():
        with v1.variable_scope("logits"), v1.variable_scope("logits"):
            v1.get_variable("biases/ExponentialMovingAverage", [51])
        with v1.variable_scope("conv0"):
            v1.get_variable("weights", [3, 3, 3, 32])  # raw only: no shadow
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            v1.train.Saver().save(sess, prefix, write_meta_graph=False)
    out = tmp_path / "out.pth"
    assert convert_main(["--ckpt", prefix, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error (CheckpointError)" in err
    assert "conv0/weights/ExponentialMovingAverage" in err
    assert not out.exists() and not (tmp_path / "out.pth.sha256").exists()
    assert convert_main(["--ckpt", str(tmp_path / "nothing.ckpt"), "--out", str(out)]) == 2
    assert "not a readable TensorFlow checkpoint" in capsys.readouterr().err
    assert not out.exists()


def test_preprocess_is_pil_bilinear_to_minus_one_one():
    """Each uint8 image resized to 299 by PIL's bilinear filter, then x / 127.5 - 1 (the
    script's scipy.misc.imresize and scaling), computed here by hand; torch's bilinear
    interpolation or [0, 1] scaling would differ."""
    images = _images(2, size=80, seed=1)
    ours = preprocess(images)
    for i in range(2):
        pil = Image.fromarray(images[i].permute(1, 2, 0).numpy()).resize((299, 299), Image.BILINEAR)
        expected = np.asarray(pil, np.float32) / 127.5 - 1.0
        np.testing.assert_allclose(ours[i].permute(1, 2, 0).numpy(), expected, atol=1e-6)
    assert ours.min() >= -1.0 and ours.max() <= 1.0 and ours.min() < -0.9


def _numpy_inception_score(logits: np.ndarray, seed: int, temperature: float = 1.0) -> tuple[float, float]:
    """inception_score.py's steps written out: the shuffle, whole batches of 64, the softmax
    over logits 1..50, 10 splits of exp(mean KL)."""
    order = np.random.RandomState(seed).permutation(len(logits))
    order = order[: len(logits) // 64 * 64]
    known = logits[order][:, 1:] / temperature
    preds = np.exp(known - known.max(1, keepdims=True))
    preds /= preds.sum(1, keepdims=True)
    scores = []
    for i in range(10):
        part = preds[i * len(preds) // 10 : (i + 1) * len(preds) // 10]
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        scores.append(np.exp(np.mean(np.sum(kl, 1))))
    return float(np.mean(scores)), float(np.std(scores))


def test_score_follows_the_script():
    """IS and TISE's IS* from logits against the NumPy steps above: 200 images leave 192
    (three batches of 64); keeping logit 0, not dropping the partial batch or another
    shuffle would change the numbers."""
    logits = torch.from_numpy(np.random.default_rng(5).normal(0, 3, (200, 51)).astype(np.float32))
    logits[:, 0] += 8.0  # a background logit that would dominate if it were kept
    mean, std, used = cub_inception_score(logits, seed=7)
    assert used == 192
    ref = _numpy_inception_score(logits.numpy().astype(np.float64), seed=7)
    assert mean == pytest.approx(ref[0], rel=1e-9) and std == pytest.approx(ref[1], rel=1e-7)
    star = cub_inception_score(logits, seed=7, temperature=inception_cub.TISE_TEMPERATURE)
    ref_star = _numpy_inception_score(logits.numpy().astype(np.float64), 7, inception_cub.TISE_TEMPERATURE)
    assert star[0] == pytest.approx(ref_star[0], rel=1e-9) and star[0] > mean
    with pytest.raises(OptionError, match="partial batch"):
        cub_inception_score(logits[:60], seed=0)


def test_pools_do_not_count_padding():
    """TF's SAME average pool divides by the pixels inside the image: at a corner of a
    constant map the mean is the constant (counting the padding would give 4/9 of it)."""
    block = inception_cub.Mixed(4, [inception_cub.Branch("branch_pool", pool="avg")])
    out = block(torch.ones(1, 4, 5, 5))
    assert torch.equal(out, torch.ones(1, 4, 5, 5))


def test_bad_weight_files(tmp_path):
    """Empty key, missing file, another network's file, a damaged copy: one clear error each."""
    with pytest.raises(ConfigError, match="EVAL.CUB_INCEPTION is empty.*attngan-convert-inception"):
        load_cub_inception("")
    with pytest.raises(SetupError, match="no such file"):
        load_cub_inception(tmp_path / "absent.pth")
    other = tmp_path / "other.pth"
    torch.save(torch.nn.Linear(3, 2).state_dict(), other)
    with pytest.raises(CheckpointError, match="not StackGAN's CUB Inception"):
        load_cub_inception(other)
    good = tmp_path / "cub.pth"
    torch.save(CubInception().state_dict(), good)
    (tmp_path / "cub.pth.sha256").write_text("0" * 64 + "  cub.pth\n")
    with pytest.raises(CheckpointError, match="damaged copy"):
        load_cub_inception(good)
    (tmp_path / "cub.pth.sha256").unlink()
    net, digest = load_cub_inception(good)
    assert len(digest) == 64 and not net.training
