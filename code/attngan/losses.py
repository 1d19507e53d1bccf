"""DAMSM losses (word level and sentence level), as in the original ``miscc/losses.py``.

Rows of every similarity matrix are images and columns captions; pairs of different
images of the same class are excluded (set to -inf) when ``class_ids`` is given.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def cosine_similarity(x1: torch.Tensor, x2: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Cosine along ``dim`` with the original's eps on the product of the norms."""
    w12 = torch.sum(x1 * x2, dim)
    return w12 / (x1.norm(2, dim) * x2.norm(2, dim)).clamp(min=eps)


def same_class_mask(class_ids: Sequence[int] | np.ndarray | None, device: torch.device) -> torch.Tensor | None:
    """[B,B] bool, True where i != j and class_ids[i] == class_ids[j] (symmetric)."""
    if class_ids is None:
        return None
    ids = torch.as_tensor(np.asarray(class_ids)).to(device, non_blocking=True)
    mask = ids.unsqueeze(0) == ids.unsqueeze(1)
    mask.fill_diagonal_(False)
    return mask


def _both_directions(scores: torch.Tensor, labels: torch.Tensor, class_ids) -> tuple[torch.Tensor, torch.Tensor]:
    mask = same_class_mask(class_ids, scores.device)
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))
    return F.cross_entropy(scores, labels), F.cross_entropy(scores.t(), labels)


def word_region_attention(regions: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor, gamma1: float):
    """Attention of every caption's words over every image's regions.

    regions [B,D,R], words [B,D,T], word_mask [B,T] (True at padding) ->
    (region-context per word [B_img,B_cap,D,T], attention [B_img,B_cap,T,R]).
    Softmax over the caption's own words, times gamma1, softmax over the regions.
    """
    scores = torch.einsum("jdr,idt->jirt", regions, words)
    scores = scores.masked_fill(word_mask[None, :, None, :], float("-inf"))
    attn = torch.softmax(scores, dim=3).transpose(2, 3)  # [j,i,T,R]
    attn = torch.softmax(attn * gamma1, dim=3)
    context = torch.einsum("jdr,jitr->jidt", regions, attn)
    return context, attn


def words_loss(
    img_features: torch.Tensor,
    words_emb: torch.Tensor,
    labels: torch.Tensor,
    cap_lens,
    class_ids,
    batch_size: int | None = None,
    gamma1: float = 5.0,
    gamma2: float = 5.0,
    gamma3: float = 10.0,
    return_scores: bool = False,
    attention: bool = True,
):
    """Word-level DAMSM loss, vectorised over all image-caption pairs.

    img_features [B,D,h,w], words_emb [B,D,T], cap_lens [B] (best on the CPU: no device
    sync) -> (loss0, loss1, att_maps: per caption i its attention on image i,
    [1, len_i, h, w], or None with ``attention=False``); with ``return_scores`` also the
    [B_img,B_cap] similarities (times gamma3, unmasked). ``batch_size`` is accepted for the
    original's signature and must match.
    """
    batch, dim, h, w = img_features.shape
    if batch_size is not None and batch_size != batch:
        raise ValueError(f"batch_size {batch_size} does not match the features' batch {batch}")
    num_words = words_emb.size(2)
    cap_lens = torch.as_tensor(cap_lens)
    lens = cap_lens.to(words_emb.device, non_blocking=True).view(-1, 1)
    word_mask = torch.arange(num_words, device=words_emb.device).unsqueeze(0) >= lens  # [B,T]
    regions = img_features.reshape(batch, dim, h * w)
    context, attn = word_region_attention(regions, words_emb, word_mask, gamma1)
    cos = cosine_similarity(words_emb.unsqueeze(0), context, dim=2)  # [j,i,T]
    sims = (gamma2 * cos).masked_fill(word_mask.unsqueeze(0), float("-inf")).logsumexp(dim=2) * gamma3
    loss0, loss1 = _both_directions(sims, labels, class_ids)
    att_maps = None
    if attention:
        idx = torch.arange(batch, device=attn.device)
        own = attn[idx, idx].view(batch, num_words, h, w)
        att_maps = [own[i : i + 1, :n] for i, n in enumerate(cap_lens.tolist())]
    return (loss0, loss1, att_maps, sims) if return_scores else (loss0, loss1, att_maps)


def sentence_scores(cnn_code: torch.Tensor, rnn_code: torch.Tensor, gamma3: float = 10.0, eps: float = 1e-8):
    """[B_img,B_cap] cosine of global image and sentence vectors, times gamma3."""
    norm = cnn_code.norm(2, dim=1, keepdim=True) @ rnn_code.norm(2, dim=1, keepdim=True).t()
    return (cnn_code @ rnn_code.t()) / norm.clamp(min=eps) * gamma3


def sent_loss(
    cnn_code: torch.Tensor,
    rnn_code: torch.Tensor,
    labels: torch.Tensor,
    class_ids,
    batch_size: int | None = None,
    gamma3: float = 10.0,
    eps: float = 1e-8,
):
    """Sentence-level DAMSM loss: cnn_code [B,D], rnn_code [B,D] -> (loss0, loss1)."""
    return _both_directions(sentence_scores(cnn_code, rnn_code, gamma3, eps), labels, class_ids)


def retrieval_top1(scores: torch.Tensor) -> tuple[float, float]:
    """Top-1 accuracy of a [B_img,B_cap] score matrix whose diagonal holds the true pairs:
    (image -> text, text -> image)."""
    target = torch.arange(scores.size(0), device=scores.device)
    i2t = (scores.argmax(dim=1) == target).float().mean().item()
    t2i = (scores.argmax(dim=0) == target).float().mean().item()
    return i2t, t2i


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 if it is of a narrower float type (bf16 under autocast), else as it is
    (a float64 step stays float64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _bce(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on probabilities, in at least float32 even under autocast
    (which refuses it: in bf16 the log of a probability near 1 loses every digit)."""
    with torch.autocast(probs.device.type, enabled=False):
        probs = at_least_float32(probs)
        return F.binary_cross_entropy(probs, target.to(probs.dtype))


def discriminator_loss(
    netD,
    real_imgs: torch.Tensor,
    fake_imgs: torch.Tensor,
    conditions: torch.Tensor,
    wrong_conditions: torch.Tensor | None = None,
    wrong_weight: float = 1.0,
) -> dict:
    """One stage's D loss (binary cross-entropy on sigmoid outputs), as the original.

    conditions: the sentence embeddings [B,nef]. The wrong pairs are real images
    0..B-2 with sentences 1..B-1 (or images 0..n-1 with ``wrong_conditions`` [n,nef], their
    mean times ``wrong_weight``: a process's share of the global batch's pairs). Returns
    the terms and ``errD``.
    """
    real_features = netD(real_imgs)
    fake_features = netD(fake_imgs.detach())
    batch = real_features.size(0)
    ones, zeros = real_features.new_ones(batch), real_features.new_zeros(batch)
    if wrong_conditions is None:
        wrong_conditions = conditions[1:batch]
    n = wrong_conditions.size(0)
    terms = {
        "cond_real": _bce(netD.COND_DNET(real_features, conditions), ones),
        "cond_fake": _bce(netD.COND_DNET(fake_features, conditions), zeros),
        "cond_wrong": _bce(netD.COND_DNET(real_features[:n], wrong_conditions), zeros[:n]) * wrong_weight,
    }
    if netD.UNCOND_DNET is not None:
        terms["uncond_real"] = _bce(netD.UNCOND_DNET(real_features), ones)
        terms["uncond_fake"] = _bce(netD.UNCOND_DNET(fake_features), zeros)
        terms["errD"] = (terms["uncond_real"] + terms["cond_real"]) / 2.0 + (
            terms["uncond_fake"] + terms["cond_fake"] + terms["cond_wrong"]
        ) / 3.0
    else:
        terms["errD"] = terms["cond_real"] + (terms["cond_fake"] + terms["cond_wrong"]) / 2.0
    return terms


def damsm_losses(
    region_features: torch.Tensor,
    cnn_code: torch.Tensor,
    words_emb: torch.Tensor,
    sent_emb: torch.Tensor,
    cap_lens,
    class_ids,
    gamma1: float,
    gamma2: float,
    gamma3: float,
    gather=None,
    attention: bool = False,
):
    """The four DAMSM losses of a length-sorted batch: image features [B,D,h,w] and [B,D],
    caption features [B,D,T] and [B,D]. ``gather`` (distributed.Gather) first concatenates
    every process's rows, so that each computes the global batch's losses; the pairs are
    the diagonal (labels 0..B-1). -> ({w_loss0, w_loss1, s_loss0, s_loss1}, attention maps
    as words_loss's (of the gathered batch), [B_img,B_cap] sentence scores, detached)."""
    if gather is not None:
        region_features, cnn_code = gather.rows(region_features), gather.rows(cnn_code)
        words_emb, sent_emb = gather.words(words_emb), gather.rows(sent_emb)
        cap_lens, class_ids = gather.host(cap_lens), gather.host(class_ids)
    labels = torch.arange(cnn_code.size(0), device=cnn_code.device)
    w0, w1, attn_maps = words_loss(
        region_features,
        words_emb,
        labels,
        cap_lens,
        class_ids,
        gamma1=gamma1,
        gamma2=gamma2,
        gamma3=gamma3,
        attention=attention,
    )
    s0, s1 = sent_loss(cnn_code, sent_emb, labels, class_ids, gamma3=gamma3)
    losses = {"w_loss0": w0, "w_loss1": w1, "s_loss0": s0, "s_loss1": s1}
    return losses, attn_maps, sentence_scores(cnn_code.detach(), sent_emb.detach(), gamma3)


class DiscriminatorLoss(nn.Module):
    """``discriminator_loss`` of one D as a module: DistributedDataParallel then sees the D
    update as one forward (its loss reads D's sub-networks directly).

    With ``gather`` (distributed.Gather; this process holds rows r*b..r*b+b-1 of the
    length-sorted global batch) the wrong pairs are the global batch's: image i with the
    sentence of row i+1, the last one's from the next process; their mean over the B-1
    pairs is shared out, each process's part times the world size (DDP averages)."""

    def __init__(self, net_d: nn.Module, gather=None):
        super().__init__()
        self.net_d, self.gather = net_d, gather

    def forward(self, real_imgs: torch.Tensor, fake_imgs: torch.Tensor, conditions: torch.Tensor) -> dict:
        if self.gather is None:
            return discriminator_loss(self.net_d, real_imgs, fake_imgs, conditions)
        everyone = self.gather.rows(conditions.detach())
        batch, world = conditions.size(0), self.gather.world
        first = world.rank * batch
        wrong = everyone[first + 1 : first + batch + 1]
        weight = wrong.size(0) * world.size / (everyone.size(0) - 1)
        return discriminator_loss(self.net_d, real_imgs, fake_imgs, conditions, wrong, weight)


def generator_loss(
    netsD,
    image_encoder,
    fake_imgs,
    words_embs,
    sent_emb,
    cap_lens,
    class_ids,
    gamma1: float,
    gamma2: float,
    gamma3: float,
    lam: float,
    gather=None,
) -> dict:
    """The G loss without KL, as the original: for each stage i, BCE of D_i's
    unconditional and conditional outputs on fake_imgs[i] against 1, plus on the last
    stage LAMBDA * (w_loss0 + w_loss1) + LAMBDA * (s_loss0 + s_loss1) through the frozen
    image encoder (over the global batch with ``gather``). Returns the terms (per stage
    ``uncond{i}``/``cond{i}``) and ``errG``."""
    batch = sent_emb.size(0)
    ones = sent_emb.new_ones(batch)
    terms, total = {}, 0.0
    for i, netD in enumerate(netsD):
        features = netD(fake_imgs[i])
        terms[f"cond{i}"] = _bce(netD.COND_DNET(features, sent_emb), ones)
        stage = terms[f"cond{i}"]
        if netD.UNCOND_DNET is not None:
            terms[f"uncond{i}"] = _bce(netD.UNCOND_DNET(features), ones)
            stage = terms[f"uncond{i}"] + stage
        total = total + stage  # summed in the original's order, so that errG is its number to the bit
    region_features, cnn_code = image_encoder(fake_imgs[len(netsD) - 1])
    damsm, _, _ = damsm_losses(
        region_features, cnn_code, words_embs, sent_emb, cap_lens, class_ids, gamma1, gamma2, gamma3, gather
    )
    terms["w_loss"] = (damsm["w_loss0"] + damsm["w_loss1"]) * lam
    terms["s_loss"] = (damsm["s_loss0"] + damsm["s_loss1"]) * lam
    terms["errG"] = total + (terms["w_loss"] + terms["s_loss"])
    return terms


def KL_loss(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """mean(-0.5 * (1 + logvar - mu^2 - exp(logvar)))."""
    return torch.mean(-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()))
