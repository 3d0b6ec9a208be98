"""A minimal vpbench model plugin: a tiny convolutional next-frame predictor.

``tinyconv`` (``model.py``) looks at the last ``window`` context frames, predicts the next frame
as the last frame plus a learned correction (a small CNN), and rolls forward one frame at a
time. It is the tutorial model of vpbench's README: one class, one config dataclass, presets,
one hook. ``model.py`` is what ``vpbench new-plugin tinyconv`` writes (a test keeps them equal).
"""

import vpbench
from vpbench_example.model import Config, Model

__all__ = ["Config", "Model"]


@vpbench.hookimpl
def vpbench_register_models(register):
    register(Model)
