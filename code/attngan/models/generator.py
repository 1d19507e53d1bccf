"""The attentional generator: CA_NET, the stages, G_NET and the single-output G_DCGAN.

Names, structure and state_dict keys follow the original ``model.py`` so that the
authors' ``netG_epoch_*.pth`` files load with strict key matching.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .attention import GlobalAttentionGeneral
from .layers import GLU, ResBlock, conv3x3, upBlock


class CA_NET(nn.Module):
    """Conditioning augmentation: sentence [B,t_dim] -> (c, mu, logvar), each [B,c_dim].

    c = mu + eps * exp(logvar / 2) with eps ~ N(0, 1), sampled in eval mode too.
    """

    def __init__(self, t_dim: int = 256, c_dim: int = 100):
        super().__init__()
        self.t_dim, self.c_dim = t_dim, c_dim
        self.fc = nn.Linear(t_dim, c_dim * 4, bias=True)
        self.relu = GLU()

    def encode(self, text_embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.relu(self.fc(text_embedding))
        return x[:, : self.c_dim], x[:, self.c_dim :]

    def reparametrize(self, mu: torch.Tensor, logvar: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        std = torch.exp(0.5 * logvar)
        return (torch.randn_like(std) if noise is None else noise) * std + mu

    def forward(
        self, text_embedding: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``noise``: eps [B,c_dim] drawn by the caller (the training step draws it for each
        row of the global batch), else drawn here."""
        mu, logvar = self.encode(text_embedding)
        return self.reparametrize(mu, logvar, noise), mu, logvar


class INIT_STAGE_G(nn.Module):
    """(z [B,z_dim], c [B,ncf]) -> h [B, ngf/16, 64, 64]."""

    def __init__(self, ngf: int, ncf: int, z_dim: int = 100):
        super().__init__()
        self.gf_dim = ngf
        self.fc = nn.Sequential(
            nn.Linear(ncf + z_dim, ngf * 4 * 4 * 2, bias=False),
            nn.BatchNorm1d(ngf * 4 * 4 * 2),
            GLU(),
        )
        self.upsample1 = upBlock(ngf, ngf // 2)
        self.upsample2 = upBlock(ngf // 2, ngf // 4)
        self.upsample3 = upBlock(ngf // 4, ngf // 8)
        self.upsample4 = upBlock(ngf // 8, ngf // 16)

    def forward(self, z_code: torch.Tensor, c_code: torch.Tensor) -> torch.Tensor:
        out = self.fc(torch.cat((c_code, z_code), 1)).view(-1, self.gf_dim, 4, 4)
        return self.upsample4(self.upsample3(self.upsample2(self.upsample1(out))))


class NEXT_STAGE_G(nn.Module):
    """(h [B,ngf,s,s], c, words [B,nef,T], mask [B,T]) -> (h' [B,ngf,2s,2s], attn [B,T,s,s])."""

    def __init__(self, ngf: int, nef: int, ncf: int, r_num: int = 2, exact_mask: bool = False):
        super().__init__()
        self.gf_dim, self.ef_dim, self.cf_dim = ngf, nef, ncf
        self.att = GlobalAttentionGeneral(ngf, nef, exact_mask=exact_mask)
        self.residual = nn.Sequential(*[ResBlock(ngf * 2) for _ in range(r_num)])
        self.upsample = upBlock(ngf * 2, ngf)

    def forward(self, h_code, c_code, word_embs, mask):
        self.att.applyMask(mask)
        c_code, att = self.att(h_code, word_embs)
        out = self.residual(torch.cat((h_code, c_code), 1))
        return self.upsample(out), att


class GET_IMAGE_G(nn.Module):
    """h [B,ngf,s,s] -> image [B,3,s,s] in [-1, 1]."""

    def __init__(self, ngf: int):
        super().__init__()
        self.gf_dim = ngf
        self.img = nn.Sequential(conv3x3(ngf, 3), nn.Tanh())

    def forward(self, h_code: torch.Tensor) -> torch.Tensor:
        return self.img(h_code)


class _StagedGenerator(nn.Module):
    """The conditioning and hidden stages shared by G_NET and G_DCGAN.

    Modules are registered in the original's order (ca_net, h_net1, img_net1, h_net2, …
    for G_NET) so that state_dict keys come out in the same order.
    """

    def __init__(self, gf_dim, emb_dim, condition_dim, z_dim, r_num, branch_num, exact_mask, image_per_stage):
        super().__init__()
        if not 1 <= branch_num <= 3:
            raise ValueError(f"TREE.BRANCH_NUM must be 1, 2 or 3, got {branch_num}")
        self.branch_num = branch_num
        self.ca_net = CA_NET(emb_dim, condition_dim)
        for i in range(1, branch_num + 1):
            if i == 1:
                stage = INIT_STAGE_G(gf_dim * 16, condition_dim, z_dim)
            else:
                stage = NEXT_STAGE_G(gf_dim, emb_dim, condition_dim, r_num, exact_mask)
            setattr(self, f"h_net{i}", stage)
            if image_per_stage:
                setattr(self, f"img_net{i}", GET_IMAGE_G(gf_dim))

    def hidden_stages(self, z_code, sent_emb, word_embs, mask, ca_noise=None):
        """-> (hidden code of each stage, attention maps of stages 2.., mu, logvar)."""
        c_code, mu, logvar = self.ca_net(sent_emb, ca_noise)
        codes = [self.h_net1(z_code, c_code)]
        att_maps = []
        for i in range(2, self.branch_num + 1):
            h_code, att = getattr(self, f"h_net{i}")(codes[-1], c_code, word_embs, mask)
            codes.append(h_code)
            att_maps.append(att)
        return codes, att_maps, mu, logvar


class G_NET(_StagedGenerator):
    """forward(z [B,z_dim], sent_emb [B,nef], word_embs [B,nef,T], mask [B,T]) ->
    (images at 64/128/256 [B,3,s,s], attention maps of stages 2.. [B,T,s/2,s/2], mu, logvar)."""

    def __init__(self, gf_dim=32, emb_dim=256, condition_dim=100, z_dim=100, r_num=2, branch_num=3, exact_mask=False):
        super().__init__(gf_dim, emb_dim, condition_dim, z_dim, r_num, branch_num, exact_mask, image_per_stage=True)

    def forward(self, z_code, sent_emb, word_embs, mask, ca_noise=None):
        codes, att_maps, mu, logvar = self.hidden_stages(z_code, sent_emb, word_embs, mask, ca_noise)
        fake_imgs = [getattr(self, f"img_net{i + 1}")(h) for i, h in enumerate(codes)]
        return fake_imgs, att_maps, mu, logvar


class G_DCGAN(_StagedGenerator):
    """The AttnDCGAN generator: the same stages, one image from the last one."""

    def __init__(self, gf_dim=32, emb_dim=256, condition_dim=100, z_dim=100, r_num=0, branch_num=3, exact_mask=False):
        super().__init__(gf_dim, emb_dim, condition_dim, z_dim, r_num, branch_num, exact_mask, image_per_stage=False)
        self.img_net = GET_IMAGE_G(gf_dim)

    def forward(self, z_code, sent_emb, word_embs, mask, ca_noise=None):
        codes, att_maps, mu, logvar = self.hidden_stages(z_code, sent_emb, word_embs, mask, ca_noise)
        return [self.img_net(codes[-1])], att_maps, mu, logvar
