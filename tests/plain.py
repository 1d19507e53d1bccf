"""Plain, loop-by-loop implementations written from docs/fidelity.md (#losses, #recipes), the
independent side of the loss and training-step tests: the DAMSM losses as the original's
loop over captions, binary cross-entropy and KL by their formulas, gradient-norm clipping
and Adam as PyTorch 0.3 computed them."""

import math

import numpy as np
import torch
import torch.nn.functional as F


def plain_cosine(x1, x2, eps=1e-8):
    """Cosine of the rows of x1 and x2 [N,D], with eps on the product of the norms."""
    dot = (x1 * x2).sum(dim=1)
    return dot / (x1.norm(dim=1) * x2.norm(dim=1)).clamp(min=eps)


def plain_func_attention(query, context, gamma1):
    """query [B,D,L], context [B,D,h,w]: softmax over words, x gamma1, softmax over regions."""
    batch, length = query.size(0), query.size(2)
    h, w = context.shape[2:]
    ctx = context.reshape(batch, -1, h * w)
    attn = torch.bmm(ctx.transpose(1, 2), query)  # [B,R,L]
    attn = torch.softmax(attn.reshape(batch * h * w, length), dim=1).reshape(batch, h * w, length)
    attn = attn.transpose(1, 2).reshape(batch * length, h * w)
    attn = torch.softmax(attn * gamma1, dim=1).reshape(batch, length, h * w)
    return torch.bmm(ctx, attn.transpose(1, 2)), attn.reshape(batch, length, h, w)


def plain_words_loss(img_features, words_emb, labels, cap_lens, class_ids, g1, g2, g3):
    """The word-level DAMSM loss, one caption at a time against every image."""
    batch = img_features.size(0)
    sims, masks, maps = [], [], []
    for i in range(batch):
        mask = (class_ids == class_ids[i]).astype(np.uint8)
        mask[i] = 0
        masks.append(mask.reshape(1, -1))
        n = int(cap_lens[i])
        word = words_emb[i, :, :n].unsqueeze(0).repeat(batch, 1, 1)  # [B,D,n]
        context, attn = plain_func_attention(word, img_features, g1)
        maps.append(attn[i].unsqueeze(0))
        word = word.transpose(1, 2).reshape(batch * n, -1)
        context = context.transpose(1, 2).reshape(batch * n, -1)
        row = plain_cosine(word, context).view(batch, n)
        sims.append(torch.log(torch.exp(row * g2).sum(dim=1, keepdim=True)))
    sims = torch.cat(sims, 1) * g3
    sims = sims.masked_fill(torch.as_tensor(np.concatenate(masks, 0)).bool(), float("-inf"))
    return F.cross_entropy(sims, labels), F.cross_entropy(sims.t(), labels), maps


def plain_sent_loss(cnn_code, rnn_code, labels, class_ids, g3):
    """The sentence-level DAMSM loss, pair by pair."""
    batch = cnn_code.size(0)
    rows = []
    for i in range(batch):
        row = []
        for j in range(batch):
            a, b = cnn_code[i], rnn_code[j]
            score = (a @ b) / (a.norm() * b.norm()).clamp(min=1e-8) * g3
            row.append(score.new_tensor(float("-inf")) if i != j and class_ids[i] == class_ids[j] else score)
        rows.append(torch.stack(row))
    scores = torch.stack(rows)
    return F.cross_entropy(scores, labels), F.cross_entropy(scores.t(), labels)


def plain_bce(probs, target: float):
    """Mean binary cross-entropy of probabilities against a constant target."""
    return -(target * torch.log(probs) + (1 - target) * torch.log(1 - probs)).mean()


def plain_kl(mu, logvar):
    return (-0.5 * (1 + logvar - mu**2 - torch.exp(logvar))).mean()


def plain_clip(grads, max_norm):
    """PyTorch 0.3's clip_grad_norm: one L2 norm over all the gradients, scaled by
    max_norm / (norm + 1e-6) when that is below 1."""
    total = math.sqrt(sum(float(g.norm()) ** 2 for g in grads))
    coef = max_norm / (total + 1e-6)
    return [g * coef for g in grads] if coef < 1 else list(grads)


class PlainAdam:
    """Adam as PyTorch 0.3's ``optim.Adam`` computed it, one named tensor at a time:
    p -= lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps).
    ``modern_eps``: the placement of eps since PyTorch 1.x (only to show the tests tell them apart)."""

    def __init__(self, lr, betas=(0.5, 0.999), eps=1e-8, modern_eps=False):
        self.lr, self.betas, self.eps, self.modern_eps = lr, betas, eps, modern_eps
        self.state = {}

    @torch.no_grad()
    def step(self, named_params, grads):
        beta1, beta2 = self.betas
        for (name, p), g in zip(named_params, grads, strict=True):
            state = self.state.setdefault(
                name, {"step": 0, "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
            )
            state["step"] += 1
            state["exp_avg"] = beta1 * state["exp_avg"] + (1 - beta1) * g
            state["exp_avg_sq"] = beta2 * state["exp_avg_sq"] + (1 - beta2) * g * g
            correction1, correction2 = 1 - beta1 ** state["step"], 1 - beta2 ** state["step"]
            eps = self.eps * math.sqrt(correction2) if self.modern_eps else self.eps
            p -= self.lr * math.sqrt(correction2) / correction1 * state["exp_avg"] / (state["exp_avg_sq"].sqrt() + eps)
