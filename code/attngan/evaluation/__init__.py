"""``evaluate()``: the paper's metrics, for ``attngan-eval`` (cli.eval_main) and the training loop.

Images come either from a generator (the paper's protocol: every test image with each of
its captions in turn, cycled until EVAL.NUM_SAMPLES images, noise from EVAL.SEED) or from
a folder of images with a manifest of their captions (any model's images). They stream in
batches through the requested metrics, none of which keeps the images:

- ``rp``: R-precision with the DAMSM encoders of TRAIN.NET_E (metrics/r_precision.py);
- ``is`` and ``fid``: Inception score and FID (metrics/image_quality.py), FID against the
  real test images at the generated images' resolution;
- ``loc``: attention localisation of the generator and of DAMSM (metrics/localisation.py),
  for datasets with ``objects.json`` (the synthetic shapes).

Every image is quantised to uint8 as it would be written to a PNG before it is scored, so
that scoring a folder written with ``save_images`` gives the same numbers as scoring the
generator directly.

Modules: captions (the protocol's images), folder (image folders), networks,
scoring (the stream through the metrics), report (report.md, figures, scalars), run
(``evaluate``), periodic (the evaluation during training).
"""

from .report import scalars
from .run import evaluate, parse_metrics

__all__ = ["evaluate", "parse_metrics", "scalars"]
