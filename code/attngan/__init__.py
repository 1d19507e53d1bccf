"""AttnGAN and DAMSM, reproduced (README.md; docs/fidelity.md for the original's behaviour)."""

import sys
import types

# TensorBoard writes its event files through a TensorFlow stub when the module
# `tensorboard.compat.notf` exists (its own switch for this); otherwise it imports TensorFlow
# whenever it is installed (the `convert` extra), which adds seconds to every command and log
# lines from TensorFlow's C++ side to its stderr.
sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
