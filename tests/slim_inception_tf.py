"""The golden reference of is_cub: slim's Inception v3 (tensorflow/models
inception/slim/inception_model.py and ops.py, as StackGAN's inception_score.py builds it)
written again in TensorFlow's own ops (tf.compat.v1), with slim's variable scopes, its
moving-average shadow variables and a checkpoint that TensorFlow itself writes and restores.

``write_checkpoint`` gives the raw variables and their ExponentialMovingAverage shadows
different random values, so a converter that reads the raw ones gives other logits;
``tf_logits`` restores ``ExponentialMovingAverage(0.9999).variables_to_restore()`` as
inception_score.py does and runs the graph."""

from __future__ import annotations

import contextlib
import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
with contextlib.suppress(ImportError):  # before TensorFlow: triton loaded after it crashes the process
    import triton  # noqa: F401
import tensorflow as tf

v1 = tf.compat.v1
MOVING = [v1.GraphKeys.GLOBAL_VARIABLES, v1.GraphKeys.MOVING_AVERAGE_VARIABLES]


def _conv(x, cout, kernel, stride=1, padding="SAME", scope=None):
    """slim ops.conv2d with batch_norm_params: conv without bias, BN (beta only, eps 1e-3), ReLU."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    with v1.variable_scope(scope, "Conv"):
        w = v1.get_variable("weights", [kh, kw, int(x.shape[-1]), cout])
        y = tf.nn.conv2d(x, w, [1, stride, stride, 1], padding=padding)
        with v1.variable_scope(None, "BatchNorm"):
            beta = v1.get_variable("beta", [cout])
            mean = v1.get_variable("moving_mean", [cout], trainable=False, collections=MOVING)
            var = v1.get_variable("moving_variance", [cout], trainable=False, collections=MOVING)
            y = tf.nn.batch_normalization(y, mean, var, beta, None, 0.001)
        return tf.nn.relu(y)


def _fc(x, cout, scope=None):
    with v1.variable_scope(scope, "FC"):
        w = v1.get_variable("weights", [int(x.shape[-1]), cout])
        b = v1.get_variable("biases", [cout])
        return tf.compat.v1.nn.xw_plus_b(x, w, b)


def _avg(x, k=3, stride=1, padding="SAME"):
    return tf.nn.avg_pool2d(x, k, stride, padding)


def _max(x):
    return tf.nn.max_pool2d(x, 3, 2, "VALID")


def _block_a(net, pool_ch):
    with v1.variable_scope("branch1x1"):
        b1 = _conv(net, 64, 1)
    with v1.variable_scope("branch5x5"):
        b5 = _conv(_conv(net, 48, 1), 64, 5)
    with v1.variable_scope("branch3x3dbl"):
        b3 = _conv(_conv(_conv(net, 64, 1), 96, 3), 96, 3)
    with v1.variable_scope("branch_pool"):
        bp = _conv(_avg(net), pool_ch, 1)
    return tf.concat([b1, b5, b3, bp], 3)


def _block_c(net, c7):
    with v1.variable_scope("branch1x1"):
        b1 = _conv(net, 192, 1)
    with v1.variable_scope("branch7x7"):
        b7 = _conv(_conv(_conv(net, c7, 1), c7, [1, 7]), 192, [7, 1])
    with v1.variable_scope("branch7x7dbl"):
        d = _conv(net, c7, 1)
        d = _conv(_conv(_conv(d, c7, [7, 1]), c7, [1, 7]), c7, [7, 1])
        d = _conv(d, 192, [1, 7])
    with v1.variable_scope("branch_pool"):
        bp = _conv(_avg(net), 192, 1)
    return tf.concat([b1, b7, d, bp], 3)


def _block_e(net):
    with v1.variable_scope("branch1x1"):
        b1 = _conv(net, 320, 1)
    with v1.variable_scope("branch3x3"):
        b3 = _conv(net, 384, 1)
        b3 = tf.concat([_conv(b3, 384, [1, 3]), _conv(b3, 384, [3, 1])], 3)
    with v1.variable_scope("branch3x3dbl"):
        d = _conv(_conv(net, 448, 1), 384, 3)
        d = tf.concat([_conv(d, 384, [1, 3]), _conv(d, 384, [3, 1])], 3)
    with v1.variable_scope("branch_pool"):
        bp = _conv(_avg(net), 192, 1)
    return tf.concat([b1, b3, d, bp], 3)


def inception_v3(images, num_classes=51):
    """images [N,299,299,3] in [-1, 1] -> logits [N,num_classes] (and the aux head's variables)."""
    net = _conv(images, 32, 3, 2, "VALID", "conv0")
    net = _conv(net, 32, 3, 1, "VALID", "conv1")
    net = _max(_conv(net, 64, 3, 1, "SAME", "conv2"))
    net = _conv(net, 80, 1, 1, "VALID", "conv3")
    net = _max(_conv(net, 192, 3, 1, "VALID", "conv4"))
    for name, pool_ch in (("mixed_35x35x256a", 32), ("mixed_35x35x288a", 64), ("mixed_35x35x288b", 64)):
        with v1.variable_scope(name):
            net = _block_a(net, pool_ch)
    with v1.variable_scope("mixed_17x17x768a"):
        with v1.variable_scope("branch3x3"):
            b3 = _conv(net, 384, 3, 2, "VALID")
        with v1.variable_scope("branch3x3dbl"):
            d = _conv(_conv(_conv(net, 64, 1), 96, 3), 96, 3, 2, "VALID")
        with v1.variable_scope("branch_pool"):
            bp = _max(net)
        net = tf.concat([b3, d, bp], 3)
    for name, c7 in (("mixed_17x17x768b", 128), ("mixed_17x17x768c", 160), ("mixed_17x17x768d", 160)):
        with v1.variable_scope(name):
            net = _block_c(net, c7)
    with v1.variable_scope("mixed_17x17x768e"):
        net = _block_c(net, 192)
    with v1.variable_scope("aux_logits"):  # unused at evaluation; in the checkpoint as in the authors'
        aux = _conv(_avg(net, 5, 3, "VALID"), 128, 1, scope="proj")
        aux = _conv(aux, 768, [5, 5], padding="VALID")
        _fc(tf.reshape(aux, [-1, 768]), num_classes)
    with v1.variable_scope("mixed_17x17x1280a"):
        with v1.variable_scope("branch3x3"):
            b3 = _conv(_conv(net, 192, 1), 320, 3, 2, "VALID")
        with v1.variable_scope("branch7x7x3"):
            d = _conv(_conv(_conv(net, 192, 1), 192, [1, 7]), 192, [7, 1])
            d = _conv(d, 192, 3, 2, "VALID")
        with v1.variable_scope("branch_pool"):
            bp = _max(net)
        net = tf.concat([b3, d, bp], 3)
    for name in ("mixed_8x8x2048a", "mixed_8x8x2048b"):
        with v1.variable_scope(name):
            net = _block_e(net)
    with v1.variable_scope("logits"):
        net = tf.reshape(_avg(net, 8, 1, "VALID"), [-1, 2048])
        return _fc(net, num_classes, scope="logits")


def _random_value(var, rng):
    """Values that keep activations of order 1 through 94 layers: He-scaled kernels, beta
    and moving mean near 0, moving variance near 1."""
    shape, name = var.shape.as_list(), var.op.name
    if "moving_variance" in name:
        return rng.uniform(0.5, 1.5, shape)
    if "moving_mean" in name or "beta" in name or "biases" in name:
        return rng.normal(0.0, 0.1, shape)
    fan_in = int(np.prod(shape[:-1]))
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)


def write_checkpoint(prefix: str, seed: int = 0, version: int = 2) -> None:
    """A checkpoint of the graph above with slim's names: every trainable and moving
    variable and its ``<name>/ExponentialMovingAverage`` shadow (made by TensorFlow's
    ExponentialMovingAverage.apply, as inception_train.py does), each with its own values."""
    rng = np.random.default_rng(seed)
    with tf.Graph().as_default():
        inception_v3(v1.placeholder(tf.float32, [None, 299, 299, 3]))
        averaged = v1.trainable_variables() + v1.moving_average_variables()
        ema = v1.train.ExponentialMovingAverage(0.9999)
        ema.apply(averaged)
        shadows = [ema.average(v) for v in averaged]
        saver = v1.train.Saver(write_version=v1.train.SaverDef.V1 if version == 1 else v1.train.SaverDef.V2)
        feeds, assigns = {}, []
        for var in averaged + shadows:  # every variable set at once (one run; no initializer needed)
            value = v1.placeholder(tf.float32, var.shape)
            feeds[value] = _random_value(var, rng).astype(np.float32)
            assigns.append(v1.assign(var, value))
        with v1.Session() as sess:
            sess.run(assigns, feeds)
            saver.save(sess, prefix, write_meta_graph=False)


def tf_logits(prefix: str, images: np.ndarray) -> np.ndarray:
    """images [N,299,299,3] float32 in [-1, 1] -> logits [N,51], with the moving averages
    restored exactly as inception_score.py restores them (a fresh graph, a Saver of
    ``ExponentialMovingAverage(0.9999).variables_to_restore()``)."""
    with tf.Graph().as_default():
        inputs = v1.placeholder(tf.float32, [None, 299, 299, 3])
        logits = inception_v3(inputs)
        restore = v1.train.ExponentialMovingAverage(0.9999).variables_to_restore()
        with v1.Session() as sess:
            v1.train.Saver(restore).restore(sess, prefix)
            return sess.run(logits, {inputs: images})
