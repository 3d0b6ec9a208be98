"""Train and evaluate the small two-stage test model, as one process or under torchrun.

    python tests/dist_worker.py OUT [--resume] [key=value ...]
    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/dist_worker.py OUT
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import models  # noqa: E402
from vpbench import runs  # noqa: E402
from vpbench.distributed import shutdown  # noqa: E402
from vpbench.plugins import PluginRecord, get_harness  # noqa: E402

SETS = ["data.n_train=32", "data.n_val=8", "data.n_test=10", "data.n_in=2", "data.n_out=3", "data.size=16",
        "data.glyph_size=8", "data.glyph_bank=16", "model.dropout=0", "train.batch_size=8", "train.ckpt_every=2",
        "train.log_every=1", "eval.bootstrap=50", "eval.speed=false", "eval.examples=0", "eval.metrics=mse,ssim"]


def main() -> None:
    out = sys.argv[1]
    resume = "--resume" in sys.argv
    extra = [a for a in sys.argv[2:] if "=" in a]
    harness = get_harness()
    harness.add_plugin(models, PluginRecord("tests", "vpbench-tests", "0"))
    run = runs.prepare(harness, "twostage", sets=SETS + extra, out=out, device="cpu")
    try:
        data = runs.build_dataset(run)
        model = runs.train(run, data, resume=resume)
        runs.evaluate(run, model, data)
    except BaseException:
        shutdown(run.dist, finished=False)
        raise
    shutdown(run.dist)


if __name__ == "__main__":
    main()
