"""Contract tests run over every registered model and dataset (built-in and installed).

A third-party plugin author can run these against their own plugin: install it next to
vpbench and run ``pytest --pyargs tests.test_contracts`` from a vpbench checkout.
"""

from __future__ import annotations

import pytest
import torch

from tests.conftest import shared_data_dir
from vpbench import config as C
from vpbench.errors import ConfigError, DataError
from vpbench.evaluate import check_prediction, predict
from vpbench.plugins import get_harness
from vpbench.protocols import member
from vpbench.runtime import seed_everything

HARNESS = get_harness()
SMALL_DIGITS = ["data.n_train=8", "data.n_val=4", "data.n_test=4", "data.n_in=4", "data.n_out=3", "data.size=32",
                "data.glyph_size=14", "data.glyph_bank=8"]


def build(name: str, seed: int = 0):
    cls = HARNESS.models.get(name)
    preset = "smoke" if any(k.split("@")[0] == "smoke" for k in cls.presets) else "none"
    cfg = C.resolve(name, cls, HARNESS.datasets.get, dataset="digits", preset=preset, sets=SMALL_DIGITS, seed=seed)
    data = HARNESS.datasets.get("digits")(cfg.data, None)
    seed_everything(seed)
    return cls(cfg.model, data.spec), data


def batch(data, n=2):
    items = [data.split("test")[i] for i in range(n)]
    return torch.stack([c for c, _ in items]), torch.stack([f for _, f in items])


@pytest.mark.parametrize("name", HARNESS.models.names())
def test_model_predicts_the_contract_shape_and_range(name):
    model, data = build(name)
    context, _ = batch(data)
    model.eval()
    with torch.no_grad():
        pred = model.predict(context.clone(), data.spec.n_out)
    check_prediction(pred, context, data.spec, name)


@pytest.mark.parametrize("name", HARNESS.models.names())
def test_model_prediction_never_depends_on_the_future(name):
    model, data = build(name)
    context, future = batch(data)
    clip = torch.cat([context, future], 1)
    noisy = torch.cat([context, torch.rand_like(future)], 1)
    model.eval()
    with torch.no_grad():
        a = predict(model, clip[:, : data.spec.n_in], data.spec, name)
        b = predict(model, noisy[:, : data.spec.n_in], data.spec, name)
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", HARNESS.models.names())
def test_model_is_deterministic_with_a_seed(name):
    (m1, data), (m2, _) = build(name, seed=3), build(name, seed=3)
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)
    context, _ = batch(data)
    m1.eval()
    m2.eval()
    with torch.no_grad():
        assert torch.equal(m1.predict(context.clone(), 3), m2.predict(context.clone(), 3))


@pytest.mark.parametrize("name", HARNESS.models.names())
def test_model_training_steps_return_a_differentiable_loss(name):
    model, data = build(name)
    stages = model.stages()
    assert len({s.name for s in stages}) == len(stages)
    ctx, fut = batch(data)
    for stage in stages:
        member(model, "on_stage_start")(stage.name)
        model.train()
        losses = model.training_step((ctx, fut), stage.name)
        loss = losses["loss"]
        assert loss.dim() == 0 and torch.isfinite(loss) and loss.requires_grad, stage.name
        params = [p for p in stage.params() if p.requires_grad]
        assert params, f"stage {stage.name} has no trainable parameters"


@pytest.mark.parametrize("name", HARNESS.datasets.names())
def test_dataset_items_match_the_spec(name):
    cls = HARNESS.datasets.get(name)
    try:
        data = cls(cls.Config(), shared_data_dir())
        split = data.split("test")
        items = [split[i] for i in range(min(3, len(split)))]
    except (DataError, ConfigError) as exc:
        pytest.skip(f"{name}: needs data or settings not available here ({exc})")
    spec = data.spec
    for context, future in items:
        assert tuple(context.shape) == (spec.n_in, *spec.frame_shape)
        assert tuple(future.shape) == (spec.n_out, *spec.frame_shape)
        assert context.dtype == torch.float32 and 0 <= context.min() and context.max() <= 1
        assert 0 <= future.min() and future.max() <= 1
    again = split[0]
    assert torch.equal(again[0], items[0][0]) and torch.equal(again[1], items[0][1])
    for part in ("train", "val", "test"):
        assert len(data.split(part)) > 0
    info = data.info()
    assert {"source", "licence", "citation", "protocol"} <= set(info)
