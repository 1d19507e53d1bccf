"""Weights in the authors' format: round trip, PyTorch-0.3 files, clear errors, atomic writes."""

from collections import OrderedDict

import pytest
import torch

from attngan.checkpoint import CheckpointError, atomic_save, load_weights, original_format, save_weights
from attngan.config import load_config
from attngan.models import build_discriminators, build_generator


def tiny_cfg():
    cfg = load_config()
    cfg.GAN.GF_DIM, cfg.GAN.DF_DIM, cfg.GAN.R_NUM, cfg.TREE.BRANCH_NUM = 4, 4, 1, 2
    cfg.TEXT.EMBEDDING_DIM, cfg.GAN.CONDITION_DIM = 16, 8
    return cfg


def test_round_trip_in_the_original_format(tmp_path):
    torch.manual_seed(0)
    net = build_generator(tiny_cfg())
    net(torch.randn(2, 100), torch.randn(2, 16), torch.randn(2, 16, 3), None)  # move BN statistics
    path = tmp_path / "netG_epoch_1.pth"
    save_weights(net, path)
    raw = torch.load(path, weights_only=True)
    assert not any(k.endswith("num_batches_tracked") for k in raw)
    assert getattr(raw, "_metadata", None) is None  # as PyTorch 0.3 wrote it
    fresh = load_weights(build_generator(tiny_cfg()), path)
    for (k, a), (_, b) in zip(net.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b) or k.endswith("num_batches_tracked"), k
    assert [t for t in tmp_path.iterdir()] == [path]  # no temporary file left


def test_dataparallel_prefix_is_stripped(tmp_path):
    net = build_discriminators(tiny_cfg())[0]
    torch.save(OrderedDict(("module." + k, v) for k, v in original_format(net).items()), tmp_path / "d.pth")
    load_weights(build_discriminators(tiny_cfg())[0], tmp_path / "d.pth")


def test_wrong_shape_names_key_and_both_shapes(tmp_path):
    save_weights(build_generator(tiny_cfg()), tmp_path / "g.pth")
    cfg = tiny_cfg()
    cfg.GAN.GF_DIM = 8
    with pytest.raises(
        CheckpointError, match=r"g\.pth: key 'ca_net|g\.pth: key '.*' has shape \(.*\) in the file but \(.*\)"
    ):
        load_weights(build_generator(cfg), tmp_path / "g.pth")


def test_missing_and_unexpected_keys(tmp_path):
    save_weights(build_generator(tiny_cfg()), tmp_path / "g.pth")
    cfg = tiny_cfg()
    cfg.TREE.BRANCH_NUM = 3
    with pytest.raises(CheckpointError, match="missing keys .*h_net3"):
        load_weights(build_generator(cfg), tmp_path / "g.pth")
    cfg.TREE.BRANCH_NUM = 1
    with pytest.raises(CheckpointError, match="unexpected keys .*h_net2"):
        load_weights(build_generator(cfg), tmp_path / "g.pth")


def test_unreadable_and_missing_files(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pth"):
        load_weights(build_generator(tiny_cfg()), bad)
    with pytest.raises(CheckpointError, match="none.pth"):
        load_weights(build_generator(tiny_cfg()), tmp_path / "none.pth")


def test_failed_save_keeps_the_previous_file(tmp_path):
    path = tmp_path / "keep.pth"
    atomic_save({"a": torch.ones(1)}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_save({"a": Unpicklable()}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.pth"]


def test_full_size_damsm_encoders_in_the_authors_format(tmp_path):
    """text_encoder200.pth / image_encoder200.pth as PyTorch 0.3 wrote them (no
    num_batches_tracked, no metadata) load strictly into freshly built bird encoders."""
    from attngan.models import build_image_encoder, build_text_encoder

    cfg = load_config()
    torch.manual_seed(0)
    for name, build in (
        ("text_encoder200.pth", lambda: build_text_encoder(cfg, 5450)),
        ("image_encoder200.pth", lambda: build_image_encoder(cfg)),
    ):
        saved = build()
        old = OrderedDict((k, v.clone()) for k, v in saved.state_dict().items() if "num_batches" not in k)
        torch.save(old, tmp_path / name)
        loaded = load_weights(build(), tmp_path / name)
        assert all(torch.equal(old[k], v) for k, v in loaded.state_dict().items() if k in old)
