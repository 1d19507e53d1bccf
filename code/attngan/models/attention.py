"""Word attention of the generator (``GlobalAttentionGeneral`` in the original)."""

from __future__ import annotations

import torch
import torch.nn as nn

from .layers import conv1x1


def quirk_row_mask(mask: torch.Tensor, num_regions: int) -> torch.Tensor:
    """The original's padding mask per attention row: [B,T] -> [B,Q,T].

    The original flattens the scores to [B*Q, T] and masks them with
    ``mask.repeat(Q, 1)``, so row ``b*Q + q`` gets the mask of caption ``(b*Q + q) % B``
    instead of caption ``b``. Identical to the exact mask when all captions in the batch
    have the same length.
    """
    batch = mask.size(0)
    rows = torch.arange(batch * num_regions, device=mask.device).view(batch, num_regions)
    return mask[rows % batch]


class GlobalAttentionGeneral(nn.Module):
    """Attends every image sub-region to the words.

    forward(input [B,idf,ih,iw], context [B,cdf,T]) ->
    (word-context [B,idf,ih,iw], attention [B,T,ih,iw]).
    ``exact_mask`` masks each caption's own padding (config FIXES.ATTENTION_MASK);
    off reproduces the original's mask (see ``quirk_row_mask``).
    """

    def __init__(self, idf: int, cdf: int, exact_mask: bool = False):
        super().__init__()
        self.conv_context = conv1x1(cdf, idf)
        self.exact_mask = exact_mask
        self.mask: torch.Tensor | None = None

    def applyMask(self, mask: torch.Tensor | None) -> None:
        """Set the padding mask [B, >=T] (True at padded word positions)."""
        self.mask = mask

    def forward(self, input: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, _, ih, iw = input.shape
        num_regions, num_words = ih * iw, context.size(2)
        target = input.reshape(batch, -1, num_regions).transpose(1, 2)  # [B,Q,idf]
        source = self.conv_context(context.unsqueeze(3)).squeeze(3)  # [B,idf,T]
        attn = torch.bmm(target, source)  # [B,Q,T]
        if self.mask is not None:
            mask = self.mask[:, :num_words].bool()
            rows = mask.unsqueeze(1) if self.exact_mask else quirk_row_mask(mask, num_regions)
            attn = attn.masked_fill(rows, float("-inf"))
        attn = torch.softmax(attn, dim=2).transpose(1, 2)  # [B,T,Q]
        weighted = torch.bmm(source, attn).view(batch, -1, ih, iw)
        return weighted, attn.reshape(batch, num_words, ih, iw)
