"""The offline end-to-end demo (``make demo``): generate the shapes dataset, pretrain
DAMSM on it on the CPU, and print the validation retrieval accuracy against chance."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "code"))

from attngan.cli import pretrain_damsm_main  # noqa: E402
from attngan.data.synthetic import make_shapes_dataset  # noqa: E402

DATA = ROOT / "data" / "shapes"
OUT = ROOT / "output" / "demo"


def main() -> int:
    start = time.time()
    if not (DATA / "objects.json").exists():
        summary = make_shapes_dataset(DATA)
        print(f"[demo] generated {summary['num_images']} images in {DATA}")
    else:
        print(f"[demo] using the existing dataset in {DATA} (make clean-demo to regenerate)")
    damsm_dir = OUT / "DAMSM"
    argv = ["--cfg", str(ROOT / "cfg/DAMSM/shapes.yml"), "--gpu", "-1", "--manualSeed", "0",
            "--data_dir", str(DATA), "--output_dir", str(damsm_dir)]
    print("[demo] pretraining DAMSM:", "python code/pretrain_DAMSM.py", " ".join(argv))
    status = pretrain_damsm_main(argv)
    if status:
        return status
    metrics = json.loads((damsm_dir / "Model" / "metrics.json").read_text())
    chance = metrics["chance"]
    print(f"[demo] DAMSM validation top-1 retrieval among {round(1 / chance)} pairs: "
          f"image->text {metrics['top1_image_to_text']:.1%}, text->image {metrics['top1_text_to_image']:.1%} "
          f"(chance {chance:.1%})")
    print(f"[demo] encoders: {damsm_dir / 'Model'}  attention maps: {damsm_dir / 'Image'}  "
          f"TensorBoard: tensorboard --logdir {damsm_dir / 'Log'}")
    print(f"[demo] done in {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
