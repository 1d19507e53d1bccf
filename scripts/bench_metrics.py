"""Seconds per 1,000 images of the published-protocol metrics' networks on this machine:
is_cub (StackGAN's CUB Inception), fid_dmgan (torchvision's Inception) and CLIP ViT-B/32
(clip_rp and clip_score share its image pass), each with its preprocessing from uint8
256 px images. Random weights (the speed does not depend on them). Prints one line per
metric; repeat with --repeats for the spread.

    python scripts/bench_metrics.py --images 64 --batch 32 --device cpu
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "code"))

from attngan.metrics import clip_scores, fid_dmgan, inception_cub


def networks(device: torch.device):
    """name -> (preprocess + forward of uint8 images)"""
    import torchvision

    cub = inception_cub.CubInception().eval().to(device)
    dm = fid_dmgan.DmganInception(torchvision.models.inception_v3(weights=None, aux_logits=True)).eval().to(device)
    out = {
        "is_cub": lambda x: cub(inception_cub.preprocess(x).to(device)),
        "fid_dmgan": lambda x: dm(fid_dmgan.preprocess(x).to(device)),
    }
    try:
        import open_clip

        model = open_clip.create_model(clip_scores.ARCHITECTURE, pretrained=None).eval().to(device)
        transform = open_clip.image_transform(224, is_train=False)
        clip = clip_scores.Clip(model, transform, open_clip.get_tokenizer(clip_scores.ARCHITECTURE), device)
        out["clip (image pass)"] = clip.images
    except ImportError:
        print("open_clip not installed: CLIP not measured")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="images timed per metric")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (args.images, 3, 256, 256), dtype=np.uint8))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, load {os.getloadavg()[0]:.1f}"
    )
    with torch.no_grad():
        for name, run in networks(device).items():
            run(images[:2])  # warm-up
            for _ in range(args.repeats):
                began = time.perf_counter()
                for start in range(0, args.images, args.batch):
                    run(images[start : start + args.batch])
                if device.type == "cuda":
                    torch.cuda.synchronize()
                seconds = time.perf_counter() - began
                print(f"{name}: {1000 * seconds / args.images:.1f} s per 1,000 images ({args.images} timed)")


if __name__ == "__main__":
    main()
