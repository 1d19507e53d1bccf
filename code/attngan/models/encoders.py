"""DAMSM text and image encoders (``RNN_ENCODER``, ``CNN_ENCODER``) and a compact image
encoder for data without ImageNet weights."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..errors import SetupError
from .layers import conv1x1

INCEPTION_FILE = "inception_v3_google-0cc3c7bd.pth"


class RNN_ENCODER(nn.Module):
    """Bidirectional LSTM/GRU text encoder.

    forward(captions [B,T] int64 (0 = padding), cap_lens [B] sorted descending, hidden) ->
    (words_emb [B,nhidden,T'], sent_emb [B,nhidden]) with T' = max(cap_lens);
    sent_emb is the final hidden state, forward direction first.
    ``text_fc`` inserts the published Python-3 fork's Linear(ninput -> ninput/2) between
    the embedding and the RNN (without the embedding dropout, as that fork does).
    """

    def __init__(
        self,
        ntoken: int,
        ninput: int = 300,
        drop_prob: float = 0.5,
        nhidden: int = 128,
        nlayers: int = 1,
        bidirectional: bool = True,
        rnn_type: str = "LSTM",
        text_fc: bool = False,
    ):
        super().__init__()
        if rnn_type not in ("LSTM", "GRU"):
            raise ValueError(f"RNN_TYPE must be 'LSTM' or 'GRU', got {rnn_type!r}")
        self.ntoken, self.ninput, self.drop_prob = ntoken, ninput, drop_prob
        self.nlayers, self.bidirectional, self.rnn_type = nlayers, bidirectional, rnn_type
        self.num_directions = 2 if bidirectional else 1
        self.nhidden = nhidden // self.num_directions
        self.encoder = nn.Embedding(ntoken, ninput)
        self.rdc_text = nn.Linear(ninput, ninput // 2) if text_fc else None
        self.drop = nn.Dropout(drop_prob)
        rnn_class = nn.LSTM if rnn_type == "LSTM" else nn.GRU
        # The original passes dropout=drop_prob, which a one-layer RNN ignores anyway.
        self.rnn = rnn_class(
            ninput // 2 if text_fc else ninput,
            self.nhidden,
            nlayers,
            batch_first=True,
            dropout=drop_prob if nlayers > 1 else 0.0,
            bidirectional=bidirectional,
        )
        self.encoder.weight.data.uniform_(-0.1, 0.1)

    def init_hidden(self, bsz: int):
        """Zero initial states, as the original (its forward also accepts None)."""
        weight = next(self.parameters())
        zeros = weight.new_zeros(self.nlayers * self.num_directions, bsz, self.nhidden)
        return (zeros, zeros.clone()) if self.rnn_type == "LSTM" else zeros

    def forward(self, captions, cap_lens, hidden=None, mask=None):
        emb = self.encoder(captions)
        emb = self.rdc_text(emb) if self.rdc_text is not None else self.drop(emb)
        lengths = cap_lens.detach().cpu() if torch.is_tensor(cap_lens) else torch.as_tensor(cap_lens)
        packed = pack_padded_sequence(emb, lengths, batch_first=True)
        output, hidden = self.rnn(packed, hidden)
        output = pad_packed_sequence(output, batch_first=True)[0]
        words_emb = output.transpose(1, 2)
        h_n = hidden[0] if self.rnn_type == "LSTM" else hidden
        sent_emb = h_n.transpose(0, 1).contiguous().view(-1, self.nhidden * self.num_directions)
        return words_emb, sent_emb


@torch.no_grad()
def text_features(text_encoder: RNN_ENCODER, captions: torch.Tensor, cap_lens: torch.Tensor):
    """Features of a length-sorted caption batch from a frozen text encoder:
    (words_embs [B,nef,T], sent_emb [B,nef], padding mask [B,T]) with T = the longest caption,
    the mask cut to T as the original does before the generator. ``cap_lens`` best on the
    CPU, where packing needs them (on the device they cost a host-device sync)."""
    words_embs, sent_emb = text_encoder(captions, cap_lens, text_encoder.init_hidden(captions.size(0)))
    return words_embs, sent_emb, (captions == 0)[:, : words_embs.size(2)]


_INCEPTION_LAYERS = (
    "Conv2d_1a_3x3",
    "Conv2d_2a_3x3",
    "Conv2d_2b_3x3",
    "Conv2d_3b_1x1",
    "Conv2d_4a_3x3",
    "Mixed_5b",
    "Mixed_5c",
    "Mixed_5d",
    "Mixed_6a",
    "Mixed_6b",
    "Mixed_6c",
    "Mixed_6d",
    "Mixed_6e",
    "Mixed_7a",
    "Mixed_7b",
    "Mixed_7c",
)


def inception_v3_backbone(weights: str | bool | None = None) -> nn.Module:
    """torchvision's Inception-v3. ``weights``: None (random, no download), True
    (ImageNet weights through torchvision's download cache) or a local file path."""
    from torchvision.models import Inception_V3_Weights, inception_v3

    if weights is None or weights is False:
        return inception_v3(weights=None, aux_logits=False, init_weights=False)
    if weights is True:
        try:
            return inception_v3(weights=Inception_V3_Weights.IMAGENET1K_V1)
        except Exception as err:
            hub = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
            raise SetupError(
                f"could not get torchvision's ImageNet Inception-v3 weights ({err}). Offline, download "
                f"{Inception_V3_Weights.IMAGENET1K_V1.url} elsewhere and put it at {hub}, or set "
                "DAMSM.INCEPTION_WEIGHTS in the config to its path (or use DAMSM.IMAGE_BACKBONE: 'compact')."
            ) from err
    path = Path(weights)
    if not path.is_file():
        raise SetupError(f"DAMSM.INCEPTION_WEIGHTS: no file at {path} (expected torchvision's {INCEPTION_FILE})")
    model = inception_v3(weights=None, aux_logits=True, init_weights=False)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model


class CNN_ENCODER(nn.Module):
    """Inception-v3 image encoder of DAMSM (frozen backbone, trainable projections).

    forward(x [B,3,H,W] in [-1,1]) -> (region features [B,nef,17,17], cnn_code [B,nef]).
    The input is resized to 299x299 bilinearly without ImageNet re-normalisation, as the
    original; ``align_corners=True`` matches PyTorch 0.3, under which the official encoders
    were trained. ``weights`` as in ``inception_v3_backbone``: None for loading a checkpoint.
    """

    def __init__(self, nef: int = 256, weights: str | bool | None = None, align_corners: bool = True):
        super().__init__()
        self.nef, self.align_corners = nef, align_corners
        model = inception_v3_backbone(weights)
        for param in model.parameters():
            param.requires_grad = False
        for name in _INCEPTION_LAYERS:
            setattr(self, name, getattr(model, name))
        self.emb_features = conv1x1(768, nef)
        self.emb_cnn_code = nn.Linear(2048, nef)
        self.emb_features.weight.data.uniform_(-0.1, 0.1)
        self.emb_cnn_code.weight.data.uniform_(-0.1, 0.1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=self.align_corners)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for name in _INCEPTION_LAYERS[5:13]:
            x = getattr(self, name)(x)
        features = x  # [B,768,17,17] region features
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
        x = F.avg_pool2d(x, kernel_size=8).flatten(1)
        return self.emb_features(features), self.emb_cnn_code(x)


def _conv_bn_relu(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class CompactImageEncoder(nn.Module):
    """A small trainable image encoder with CNN_ENCODER's interface (our addition).

    For data without ImageNet weights (the offline synthetic dataset). The input is
    resized to ``image_size``; region features come at 1/8 of it ([B,nef,S/8,S/8], 8x8 for
    64 px) and the global code from a further 1/2.
    """

    def __init__(self, nef: int = 256, image_size: int = 64, width: int = 64):
        super().__init__()
        self.nef, self.image_size = nef, image_size
        self.local = nn.Sequential(
            _conv_bn_relu(3, width // 2, 1),
            _conv_bn_relu(width // 2, width, 2),
            _conv_bn_relu(width, width * 2, 2),
            _conv_bn_relu(width * 2, width * 2, 2),
            _conv_bn_relu(width * 2, width * 2, 1),
        )
        self.glob = nn.Sequential(_conv_bn_relu(width * 2, width * 4, 2), _conv_bn_relu(width * 4, width * 4, 1))
        self.emb_features = conv1x1(width * 2, nef)
        self.emb_cnn_code = nn.Linear(width * 4, nef)
        self.emb_features.weight.data.uniform_(-0.1, 0.1)
        self.emb_cnn_code.weight.data.uniform_(-0.1, 0.1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        local = self.local(x)
        code = self.glob(local).mean(dim=(2, 3))
        return self.emb_features(local), self.emb_cnn_code(code)
