"""The networks, under the original class names so that code written for the authors'
``model.py`` ports by changing an import."""

from .attention import GlobalAttentionGeneral
from .build import build_discriminators, build_generator, build_image_encoder, build_text_encoder
from .discriminator import D_GET_LOGITS, D_NET64, D_NET128, D_NET256
from .encoders import CNN_ENCODER, RNN_ENCODER, CompactImageEncoder, text_features
from .generator import CA_NET, G_DCGAN, G_NET, GET_IMAGE_G, INIT_STAGE_G, NEXT_STAGE_G
from .layers import GLU, ResBlock, weights_init

ATT_NET = GlobalAttentionGeneral

__all__ = [
    "ATT_NET",
    "CA_NET",
    "CNN_ENCODER",
    "CompactImageEncoder",
    "D_GET_LOGITS",
    "D_NET64",
    "D_NET128",
    "D_NET256",
    "GET_IMAGE_G",
    "GLU",
    "G_DCGAN",
    "G_NET",
    "GlobalAttentionGeneral",
    "INIT_STAGE_G",
    "NEXT_STAGE_G",
    "RNN_ENCODER",
    "ResBlock",
    "build_discriminators",
    "build_generator",
    "build_image_encoder",
    "build_text_encoder",
    "text_features",
    "weights_init",
]
