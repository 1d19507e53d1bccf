"""``attngan-convert-inception``: StackGAN's CUB Inception checkpoint (TensorFlow, TF-slim
variable names) -> a plain PyTorch state_dict of ``inception_cub.CubInception``, with its
sha256 in ``<out>.sha256`` beside it. Only this command needs TensorFlow (the optional
extra ``.[convert]``); the evaluation reads the converted file.

Like ``inception_score.py``, which restores ``ExponentialMovingAverage(0.9999)
.variables_to_restore()``, every weight, beta, moving mean and moving variance is taken
from its moving-average shadow variable ``<variable>/ExponentialMovingAverage``, not from
the raw variable. TensorFlow's reader takes either checkpoint format (V1 ``model.ckpt-N``
or V2 ``.index`` + ``.data``)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import CheckpointError, atomic_save
from ..errors import USER_ERRORS, CommandParser, SetupError, report, user_path
from ..files import sha256_file, write_atomic
from .inception_cub import CubInception

log = logging.getLogger(__name__)

EMA = "ExponentialMovingAverage"
BATCH_NORM = ("beta", "moving_mean", "moving_variance")


def tf_variable(key: str) -> str:
    """Our state_dict key -> the slim shadow variable it is read from, e.g.
    ``mixed_35x35x256a.branch5x5.Conv_1.beta`` -> ``mixed_35x35x256a/branch5x5/Conv_1/BatchNorm/beta/ExponentialMovingAverage``."""
    scope, leaf = key.rsplit(".", 1)
    scope = scope.replace(".", "/")
    return f"{scope}/BatchNorm/{leaf}/{EMA}" if leaf in BATCH_NORM else f"{scope}/{leaf}/{EMA}"


def to_torch(value: np.ndarray) -> torch.Tensor:
    """A TF tensor in our layout: conv kernels HWIO -> OIHW, fc weights [in,out] -> [out,in]."""
    if value.ndim == 4:
        value = value.transpose(3, 2, 0, 1)
    elif value.ndim == 2:
        value = value.T
    return torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))


def _reader(prefix: str):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # triton (which torch's compiler loads, when installed) crashes the process when it is
    # loaded after TensorFlow (tensorflow-cpu 2.21, triton 3.8); before it, both work.
    with contextlib.suppress(ImportError):
        import triton  # noqa: F401

    try:
        import tensorflow as tf
    except ImportError:
        raise SetupError(
            "reading a TensorFlow checkpoint needs TensorFlow: pip install -e '.[convert]' (tensorflow-cpu); "
            "the evaluation itself does not"
        ) from None
    try:
        return tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"--ckpt {prefix}: not a readable TensorFlow checkpoint ({message})") from None


def convert(prefix: str, out: str | os.PathLike) -> str:
    """Read checkpoint ``prefix``, write the state_dict to ``out`` and its sha256 to
    ``out.sha256``; returns the sha256. Nothing is written if a variable is missing or of
    another shape."""
    reader = _reader(prefix)
    shapes = reader.get_variable_to_shape_map()
    logits = tf_variable("logits.logits.biases")
    if logits not in shapes:
        raise CheckpointError(
            f"--ckpt {prefix}: no {logits}; expected the TF-slim Inception v3 of StackGAN's inception_score.py "
            "with its moving averages (inception_finetuned_models/birds_valid299/model.ckpt)"
        )
    net = CubInception(num_classes=shapes[logits][0])
    state, missing, wrong = {}, [], []
    for key, like in net.state_dict().items():
        name = tf_variable(key)
        if name not in shapes:
            missing.append(name)
            continue
        value = to_torch(reader.get_tensor(name))
        if value.shape != like.shape:
            wrong.append(f"{name} {tuple(shapes[name])}")
        state[key] = value
    if missing or wrong:
        what = f"{len(missing)} variables missing, e.g. {missing[:3]}" if missing else f"shapes differ: {wrong[:3]}"
        raise CheckpointError(
            f"--ckpt {prefix}: {what}; expected the TF-slim Inception v3 of StackGAN's inception_score.py "
            "with the moving-average shadow variables (<variable>/ExponentialMovingAverage)"
        )
    out = Path(out)
    with user_path(out, "--out"):
        atomic_save(state, out)
        digest = sha256_file(out)
        write_atomic(f"{out}.sha256", f"{digest}  {out.name}\n".encode())
    log.info(
        "converted %d tensors (%d classes) from %s to %s", len(state), net.logits.logits.biases.numel(), prefix, out
    )
    return digest


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(
        description="Convert StackGAN's CUB Inception v3 (a TensorFlow checkpoint, needs .[convert]) into the "
        "PyTorch file that is_cub reads (EVAL.CUB_INCEPTION)."
    )
    parser.add_argument(
        "--ckpt", required=True, help="checkpoint prefix, e.g. inception_finetuned_models/birds_valid299/model.ckpt"
    )
    parser.add_argument("--out", required=True, help="the .pth to write (its sha256 goes to <out>.sha256)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        digest = convert(args.ckpt, args.out)
    except USER_ERRORS as err:
        return report(err)
    print(f"{args.out} sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
