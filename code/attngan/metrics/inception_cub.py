"""The CUB Inception score of StackGAN and AttnGAN (``is_cub``): a PyTorch port of the
Inception v3 that hanzhanggit/StackGAN-inception-model's ``inception_score.py`` builds with
the old TF-slim ``inception/slim/inception_model.py`` of tensorflow/models, fine-tuned on
CUB, and that script's protocol.

The network, as slim builds it for evaluation: every convolution has no bias and is
followed by batch norm without gamma (beta only, epsilon 1e-3, the moving mean and
variance) and a ReLU; the stride-1 pools of the mixed blocks are TensorFlow's 'SAME' average
pools, which divide by the number of pixels inside the image (``count_include_pad=False``);
the logits are a fully connected layer on the 8x8 average pool. ``num_classes=50`` gives
51 logits, logit 0 being slim's unused background class; the script's softmax is over
logits 1..50. Parameter names mirror slim's variable scopes ('/' -> '.'), so that
``convert_inception`` maps each to its checkpoint variable by name.

The protocol (``inception_score.py``): each uint8 image resized to 299x299 by PIL's
bilinear filter (what ``scipy.misc.imresize(img, (299, 299, 3), interp='bilinear')`` did),
scaled to [-1, 1]; the images shuffled (unseeded there, seeded and recorded here), batches
of 64 with the remainder dropped, IS = exp(E_x KL(p(y|x) || p(y))) over 10 consecutive
splits, mean and population std. IS* of TISE (VinAIResearch/tise-toolbox) divides the 50
logits by a temperature (0.5980541706085205 for this network) before the softmax.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..checkpoint import CheckpointError, read_state_dict
from ..config import ConfigError
from ..errors import OptionError, SetupError
from ..files import sha256_file
from .image_quality import inception_score_from_probs

NUM_CLASSES = 51  # 50 CUB test classes + slim's background class 0
INPUT_SIZE = 299
BATCH = 64  # the script's batch: images beyond the last full batch are dropped
TISE_TEMPERATURE = 0.5980541706085205  # TISE's IS* temperature for this network (inception_score_star_bird.py)
BN_EPSILON = 1e-3


class SlimConv(nn.Module):
    """slim's ``ops.conv2d`` at evaluation: convolution without bias, batch norm without
    gamma, ReLU. [N,cin,H,W] -> [N,cout,H',W']. ``same`` padding only at stride 1 (the only
    place this network uses it), where TensorFlow pads symmetrically."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1, same: bool = True):
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        if same and stride != 1:
            raise ValueError("TF 'SAME' padding at stride > 1 is asymmetric; this network has none")
        self.stride, self.padding = stride, (kh // 2, kw // 2) if same else (0, 0)
        self.weights = nn.Parameter(torch.zeros(cout, cin, kh, kw))
        self.beta = nn.Parameter(torch.zeros(cout))
        self.register_buffer("moving_mean", torch.zeros(cout))
        self.register_buffer("moving_variance", torch.ones(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weights, stride=self.stride, padding=self.padding)
        x = F.batch_norm(x, self.moving_mean, self.moving_variance, None, self.beta, False, 0.0, BN_EPSILON)
        return F.relu(x)


@dataclass(frozen=True)
class Branch:
    """One branch of a mixed block: an optional pool first ('avg': 3x3 SAME; 'max': 3x3
    stride 2 VALID), then convolutions (cout, kernel, stride, same) named Conv, Conv_1, ...
    as slim's variable scopes number them; ``split``: the last two run side by side on the
    same input and are concatenated (the 8x8 blocks)."""

    name: str
    convs: Sequence[tuple[int, int | tuple[int, int], int, bool]] = ()
    pool: str | None = None
    split: bool = False


def _block_a(pool_ch: int) -> list[Branch]:
    return [
        Branch("branch1x1", [(64, 1, 1, True)]),
        Branch("branch5x5", [(48, 1, 1, True), (64, 5, 1, True)]),
        Branch("branch3x3dbl", [(64, 1, 1, True), (96, 3, 1, True), (96, 3, 1, True)]),
        Branch("branch_pool", [(pool_ch, 1, 1, True)], pool="avg"),
    ]


def _block_c(c7: int) -> list[Branch]:
    return [
        Branch("branch1x1", [(192, 1, 1, True)]),
        Branch("branch7x7", [(c7, 1, 1, True), (c7, (1, 7), 1, True), (192, (7, 1), 1, True)]),
        Branch(
            "branch7x7dbl",
            [(c7, 1, 1, True), (c7, (7, 1), 1, True), (c7, (1, 7), 1, True), (c7, (7, 1), 1, True)]
            + [(192, (1, 7), 1, True)],
        ),
        Branch("branch_pool", [(192, 1, 1, True)], pool="avg"),
    ]


_BLOCK_E = [
    Branch("branch1x1", [(320, 1, 1, True)]),
    Branch("branch3x3", [(384, 1, 1, True), (384, (1, 3), 1, True), (384, (3, 1), 1, True)], split=True),
    Branch(
        "branch3x3dbl",
        [(448, 1, 1, True), (384, 3, 1, True), (384, (1, 3), 1, True), (384, (3, 1), 1, True)],
        split=True,
    ),
    Branch("branch_pool", [(192, 1, 1, True)], pool="avg"),
]

# The mixed blocks of slim's inception_v3, in order, with their scope names.
BLOCKS: list[tuple[str, list[Branch]]] = [
    ("mixed_35x35x256a", _block_a(32)),
    ("mixed_35x35x288a", _block_a(64)),
    ("mixed_35x35x288b", _block_a(64)),
    (
        "mixed_17x17x768a",
        [
            Branch("branch3x3", [(384, 3, 2, False)]),
            Branch("branch3x3dbl", [(64, 1, 1, True), (96, 3, 1, True), (96, 3, 2, False)]),
            Branch("branch_pool", pool="max"),
        ],
    ),
    ("mixed_17x17x768b", _block_c(128)),
    ("mixed_17x17x768c", _block_c(160)),
    ("mixed_17x17x768d", _block_c(160)),
    ("mixed_17x17x768e", _block_c(192)),
    (
        "mixed_17x17x1280a",
        [
            Branch("branch3x3", [(192, 1, 1, True), (320, 3, 2, False)]),
            Branch(
                "branch7x7x3",
                [(192, 1, 1, True), (192, (1, 7), 1, True), (192, (7, 1), 1, True), (192, 3, 2, False)],
            ),
            Branch("branch_pool", pool="max"),
        ],
    ),
    ("mixed_8x8x2048a", _BLOCK_E),
    ("mixed_8x8x2048b", _BLOCK_E),
]


class Mixed(nn.Module):
    """A mixed block: its branches side by side, concatenated along channels."""

    def __init__(self, cin: int, branches: list[Branch]):
        super().__init__()
        self.branches = branches
        self.out_channels = 0
        for branch in branches:
            convs, c, n = nn.ModuleDict(), cin, len(branch.convs)
            for i, (cout, kernel, stride, same) in enumerate(branch.convs):
                convs["Conv" if i == 0 else f"Conv_{i}"] = SlimConv(c, cout, kernel, stride, same)
                if not (branch.split and i >= n - 2):  # a split's last two convs both read the same input
                    c = cout
            self.add_module(branch.name, convs)  # slim's scope name: <block>.<branch>.Conv_<i>
            if branch.split:
                c = branch.convs[-2][0] + branch.convs[-1][0]
            self.out_channels += c  # a pool-only branch keeps its input's channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for branch in self.branches:
            y = x
            if branch.pool == "avg":
                y = F.avg_pool2d(y, 3, stride=1, padding=1, count_include_pad=False)  # TF SAME: padding not counted
            elif branch.pool == "max":
                y = F.max_pool2d(y, 3, stride=2)
            convs = list(getattr(self, branch.name).values())
            if branch.split:
                for conv in convs[:-2]:
                    y = conv(y)
                y = torch.cat([convs[-2](y), convs[-1](y)], dim=1)
            else:
                for conv in convs:
                    y = conv(y)
            outs.append(y)
        return torch.cat(outs, dim=1)


class CubInception(nn.Module):
    """slim's Inception v3 at evaluation (no aux head, no dropout): images [N,3,299,299] in
    [-1, 1] -> logits [N,num_classes] (logit 0: the background class)."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.conv0 = SlimConv(3, 32, 3, stride=2, same=False)
        self.conv1 = SlimConv(32, 32, 3, same=False)
        self.conv2 = SlimConv(32, 64, 3, same=True)
        self.conv3 = SlimConv(64, 80, 1, same=False)
        self.conv4 = SlimConv(80, 192, 3, same=False)
        c = 192
        for name, branches in BLOCKS:
            block = Mixed(c, branches)
            self.add_module(name, block)
            c = block.out_channels
        self.logits = nn.Module()
        self.logits.logits = _Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(self.conv1(self.conv0(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.conv4(self.conv3(x))
        x = F.max_pool2d(x, 3, stride=2)
        for name, _ in BLOCKS:
            x = getattr(self, name)(x)
        x = x.mean(dim=(2, 3))  # the 8x8 VALID average pool
        return self.logits.logits(x)


class _Linear(nn.Module):
    """slim's ``ops.fc`` without activation, with its variable names (weights [out,in], biases)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(cout, cin))
        self.biases = nn.Parameter(torch.zeros(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weights, self.biases)


def preprocess(images: torch.Tensor) -> torch.Tensor:
    """uint8 images [N,3,H,W] -> [N,3,299,299] float in [-1, 1]: PIL bilinear resize of the
    uint8 image (scipy.misc.imresize's), then x / 127.5 - 1, as ``inception_score.py``."""
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected uint8 images [N,3,H,W], got {images.dtype} {tuple(images.shape)}")
    out = np.empty((len(images), INPUT_SIZE, INPUT_SIZE, 3), np.float32)
    for i, pixels in enumerate(images.permute(0, 2, 3, 1).cpu().numpy()):
        out[i] = np.asarray(Image.fromarray(pixels).resize((INPUT_SIZE, INPUT_SIZE), Image.BILINEAR), np.float32)
    return torch.from_numpy(out / 127.5 - 1.0).permute(0, 3, 1, 2).contiguous()


def protocol_order(num_images: int, seed: int) -> np.ndarray:
    """The images the script scores, in its order: a shuffle (seeded here) cut to whole
    batches of 64. Each image's prediction does not depend on its batch, so the shuffle can
    be applied to predictions made in any order."""
    used = num_images // BATCH * BATCH
    return np.random.RandomState(seed).permutation(num_images)[:used]


def cub_inception_score(
    logits: torch.Tensor, seed: int, splits: int = 10, temperature: float = 1.0
) -> tuple[float, float, int]:
    """logits [N,51] of the images in arrival order -> (mean, std, images used): the softmax
    over logits 1..50 (divided by ``temperature``: TISE's IS*), the seeded shuffle, whole
    batches of 64, ``splits`` consecutive groups."""
    order = protocol_order(len(logits), seed)
    if len(order) < splits:
        raise OptionError(
            f"is_cub: {len(logits)} images leave {len(order)} after dropping the last partial batch of {BATCH}, "
            f"fewer than {splits} splits; score at least {BATCH} images (--num_samples)"
        )
    probs = (logits[torch.as_tensor(order)][:, 1:].double() / temperature).softmax(dim=1)
    mean, std = inception_score_from_probs(probs, splits)
    return mean, std, len(order)


def load_cub_inception(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[CubInception, str]:
    """The network from a file written by ``attngan-convert-inception`` (EVAL.CUB_INCEPTION),
    frozen, in eval mode; with the file's sha256 (checked against ``<file>.sha256`` if that
    is beside it)."""
    if not path:
        raise ConfigError(
            "EVAL.CUB_INCEPTION is empty: is_cub needs StackGAN's CUB Inception model converted to PyTorch "
            "(attngan-convert-inception --ckpt inception_finetuned_models/birds_valid299/model.ckpt "
            "--out models/inception_cub.pth; docs/evaluation.md), e.g. --set EVAL.CUB_INCEPTION=models/inception_cub.pth"
        )
    if not os.path.isfile(path):
        raise SetupError(
            f"EVAL.CUB_INCEPTION = {path}: no such file; convert StackGAN's CUB Inception checkpoint there with "
            "attngan-convert-inception (docs/evaluation.md says where the checkpoint comes from)"
        )
    state = read_state_dict(path)
    net = CubInception(num_classes=state["logits.logits.biases"].numel() if "logits.logits.biases" in state else 0)
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or wrong or len(state) != len(expected) or net.logits.logits.biases.numel() != NUM_CLASSES:
        detail = f"missing {missing[:2]}" if missing else f"shapes of {wrong[:2]}" if wrong else "other entries"
        raise CheckpointError(
            f"{path}: not StackGAN's CUB Inception v3 as attngan-convert-inception writes it ({detail}; "
            f"expected {len(expected)} tensors and {NUM_CLASSES} logits)"
        )
    net.load_state_dict(state)
    digest = sha256_file(path)
    recorded = f"{path}.sha256"
    if os.path.isfile(recorded):
        with open(recorded, encoding="utf-8") as f:
            expected_digest = (f.read().split() or [""])[0]
        if expected_digest != digest:
            raise CheckpointError(
                f"{path}: sha256 {digest} differs from {recorded} ({expected_digest}): a damaged copy"
            )
    return net.requires_grad_(False).eval().to(device), digest
