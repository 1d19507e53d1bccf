"""Per-stage discriminators (original names and state_dict keys)."""

from __future__ import annotations

import torch
import torch.nn as nn

from .layers import Block3x3_leakRelu, downBlock, encode_image_by_16times


class D_GET_LOGITS(nn.Module):
    """Image code [B,8ndf,4,4] (+ sentence [B,nef] when conditional) -> probability [B]."""

    def __init__(self, ndf: int, nef: int, bcondition: bool = False):
        super().__init__()
        self.df_dim, self.ef_dim, self.bcondition = ndf, nef, bcondition
        if bcondition:
            self.jointConv = Block3x3_leakRelu(ndf * 8 + nef, ndf * 8)
        self.outlogits = nn.Sequential(nn.Conv2d(ndf * 8, 1, kernel_size=4, stride=4), nn.Sigmoid())

    def forward(self, h_code: torch.Tensor, c_code: torch.Tensor | None = None) -> torch.Tensor:
        if self.bcondition and c_code is not None:
            c_code = c_code.view(-1, self.ef_dim, 1, 1).repeat(1, 1, 4, 4)
            h_code = self.jointConv(torch.cat((h_code, c_code), 1))
        return self.outlogits(h_code).view(-1)


class _DNet(nn.Module):
    """Shared heads: ``UNCOND_DNET`` (when b_jcu) and ``COND_DNET``; forward gives the code."""

    def _add_heads(self, ndf: int, nef: int, b_jcu: bool) -> None:
        self.UNCOND_DNET = D_GET_LOGITS(ndf, nef, bcondition=False) if b_jcu else None
        self.COND_DNET = D_GET_LOGITS(ndf, nef, bcondition=True)


class D_NET64(_DNet):
    """[B,3,64,64] -> [B,8ndf,4,4]."""

    def __init__(self, ndf: int = 64, nef: int = 256, b_jcu: bool = True):
        super().__init__()
        self.img_code_s16 = encode_image_by_16times(ndf)
        self._add_heads(ndf, nef, b_jcu)

    def forward(self, x_var: torch.Tensor) -> torch.Tensor:
        return self.img_code_s16(x_var)


class D_NET128(_DNet):
    """[B,3,128,128] -> [B,8ndf,4,4]."""

    def __init__(self, ndf: int = 64, nef: int = 256, b_jcu: bool = True):
        super().__init__()
        self.img_code_s16 = encode_image_by_16times(ndf)
        self.img_code_s32 = downBlock(ndf * 8, ndf * 16)
        self.img_code_s32_1 = Block3x3_leakRelu(ndf * 16, ndf * 8)
        self._add_heads(ndf, nef, b_jcu)

    def forward(self, x_var: torch.Tensor) -> torch.Tensor:
        return self.img_code_s32_1(self.img_code_s32(self.img_code_s16(x_var)))


class D_NET256(_DNet):
    """[B,3,256,256] -> [B,8ndf,4,4]."""

    def __init__(self, ndf: int = 64, nef: int = 256, b_jcu: bool = True):
        super().__init__()
        self.img_code_s16 = encode_image_by_16times(ndf)
        self.img_code_s32 = downBlock(ndf * 8, ndf * 16)
        self.img_code_s64 = downBlock(ndf * 16, ndf * 32)
        self.img_code_s64_1 = Block3x3_leakRelu(ndf * 32, ndf * 16)
        self.img_code_s64_2 = Block3x3_leakRelu(ndf * 16, ndf * 8)
        self._add_heads(ndf, nef, b_jcu)

    def forward(self, x_var: torch.Tensor) -> torch.Tensor:
        x = self.img_code_s64(self.img_code_s32(self.img_code_s16(x_var)))
        return self.img_code_s64_2(self.img_code_s64_1(x))


D_NETS = (D_NET64, D_NET128, D_NET256)
