"""S-HR-VQVAE: joint-stage gradients, relaxation, generation masks, overfitting, resume."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from vpbench import config as C
from vpbench.builtin.digits import Digits
from vpbench.protocols import train_mode
from vpbench.runtime import seed_everything
from vpbench.train import Job, Trainer
from vpbench_shrvqvae.model import SHRVQVAE

TINY = ["data.n_train=4", "data.n_val=4", "data.n_test=4", "data.size=32", "data.glyph_size=14", "data.n_in=4",
        "data.n_out=4", "model.hidden=32", "model.res_blocks=1", "model.res_hidden=16", "model.embed_dim=16",
        "model.levels=2", "model.codebook_size=8", "model.prior_embed=8", "model.prior_hidden=16", "model.prior_blocks=2",
        "model.attn_every=2", "model.first_kernel_space=3", "model.ae_steps=300", "model.ae_lr=3e-3",
        "model.prior_steps=200", "model.prior_lr=3e-3", "model.joint_steps=0", "model.dead_after=30",
        "model.restart_every=10", "train.batch_size=4", "train.val_clips=4", "train.log_every=10",
        "train.select_best=false", "train.ckpt_every=40"]


def build(sets=(), seed=0):
    cfg = C.resolve("shrvqvae", SHRVQVAE, lambda n: Digits, sets=TINY + list(sets), seed=seed)
    data = Digits(cfg.data)
    seed_everything(seed)
    return SHRVQVAE(cfg.model, data.spec), data, cfg


def clips(data, n=4, split="train"):
    items = [data.split(split)[i] for i in range(n)]
    return torch.stack([c for c, _ in items]), torch.stack([f for _, f in items])


@pytest.mark.parametrize("lam", [0.0, 1.0])
def test_joint_stage_trains_the_decoder_only_when_lambda_is_positive(lam):
    model, data, _ = build([f"model.lam={lam}"])
    train_mode(model, model.stages()[2])
    loss = model.training_step(clips(data), "joint")
    loss["loss"].backward()
    decoder_grad = sum(p.grad.abs().sum() for p in model.decoder.parameters() if p.grad is not None)
    prior_grad = sum(p.grad.abs().sum() for p in model.prior.parameters() if p.grad is not None)
    assert prior_grad > 0
    assert (decoder_grad > 0) == (lam > 0)
    assert ("pixel" in loss) == (lam > 0)
    assert all(p.grad is None for p in model.encoder.parameters())  # encoder frozen (no_grad encoding)


def test_codebooks_stay_fixed_after_the_autoencoder_stage():
    """The prior and joint stages declare the quantizer frozen: the trainer's training mode keeps
    it in eval mode, so its EMA statistics and dead-code restarts do not move the codebooks."""
    model, data, _ = build(["model.restart_every=1", "model.dead_after=1"])
    ae, prior, joint = model.stages()
    train_mode(model, ae)
    model.training_step(clips(data), "autoencoder")
    assert model.quantizer.training and bool(model.quantizer.initialised)
    before = {k: v.clone() for k, v in model.quantizer.state_dict().items()}
    for stage in (prior, joint):
        train_mode(model, stage)
        assert model.prior.training and model.decoder.training and not model.quantizer.training
        model.training_step(clips(data), stage.name)["loss"].backward()
    after = model.quantizer.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    train_mode(model, ae)  # without the declaration the same steps move them
    model.training_step(clips(data), "autoencoder")
    assert not all(torch.equal(before[k], model.quantizer.state_dict()[k]) for k in before)


@pytest.mark.parametrize("relaxation", ["softmax", "gumbel"])
def test_relaxation_with_certain_logits_equals_the_true_codewords(relaxation):
    model, data, _ = build([f"model.relaxation={relaxation}", "model.tau=1.0"])
    model.eval()
    context, future = clips(data, 2)
    local = model.encode_clip(future)
    glob = model.to_global(local)
    logits = torch.nn.functional.one_hot(local, model.quantizer.classes).movedim(-1, 3).float() * 1e4
    e_hat = model._relaxed_codewords(logits, glob)
    expected = model.quantizer.decode_codes(local.flatten(0, 1))
    assert torch.allclose(e_hat, expected, atol=1e-5)


def test_generation_never_picks_a_codeword_unseen_in_training():
    model, data, _ = build()
    model.eval()
    for level in range(model.quantizer.levels):
        getattr(model, f"prior_seen{level}").zero_()
    model.prior_seen0[3] = True  # only codeword 3 at level 1 ...
    model.prior_seen1[3 * 8 + 5] = True  # ... and its child 5 at level 2 were ever targets
    context, _ = clips(data, 2)
    pred = model.predict(context, 2)
    assert pred.shape == (2, 2, 1, 32, 32)
    choose = model._chooser(torch.device("cpu"))
    logits = torch.zeros(2, 8)
    logits[:, 0] = 100.0  # the network prefers codeword 0, which was never a target
    assert choose(logits, 0, None).tolist() == [3, 3]
    assert choose(torch.randn(2, 8), 1, torch.tensor([3, 3])).tolist() == [5, 5]


@pytest.mark.parametrize("prior", ["pixelcnn", "vpn"])
def test_cached_and_naive_prediction_agree(prior):
    model, data, _ = build(["model.prior_blocks=1", "model.attn_every=1", "data.size=16", "data.glyph_size=8",
                            f"model.prior={prior}"])
    model.eval()
    context, _ = clips(data, 2)
    cached = model.predict(context, 2)
    # parallel_decoding: retired and ignored; a config that names it still predicts the same
    variants = [{"cached": False}] + ([{"parallel_decoding": True}, {"wavefront": False}] if prior == "vpn" else [])
    for change in variants:
        other = SHRVQVAE(dataclasses.replace(model.config, **change), model.spec)
        other.load_state_dict(model.state_dict())
        other.eval()
        assert torch.equal(cached, other.predict(context, 2)), change


@pytest.mark.parametrize("prior", ["pixelcnn", "vpn"])
def test_sampled_flop_count_of_generation_equals_the_full_count(prior):
    """The smoke preset's model: three counted frames and positions stand for all of them."""
    from vpbench.profile import count_flops, model_flops
    from vpbench.protocols import DataSpec

    cfg = C.build(SHRVQVAE.Config, dict(SHRVQVAE.presets["smoke"]["model"], prior=prior))
    spec = DataSpec(channels=1, height=20, width=24, n_in=2, n_out=5)  # a 5 x 6 latent grid
    sampled = model_flops(SHRVQVAE, cfg, spec)  # on the meta device
    model = SHRVQVAE(cfg, spec).eval()  # every step, for real on the CPU (faster per op than meta)
    full = count_flops(lambda x: model.predict(x, spec.n_out), lambda d: torch.rand(1, 2, 1, 20, 24), sampled=False)
    assert (sampled.counted_on, full.counted_on) == ("meta", "cpu")
    assert sampled.flops == full.flops > 0 and sampled.uncounted == full.uncounted


def square(h=16, w=16, top=0, left=0, size=6):
    frame = torch.zeros(1, h, w)
    frame[:, top:top + size, left:left + size] = 1.0
    return frame


def test_mbr_frames_keeps_what_the_samples_agree_on_and_hedges_where_they_do_not():
    from vpbench_shrvqvae.model import mbr_frames

    here, there, elsewhere = square(top=2, left=2), square(top=9, left=9), square(top=2, left=9)
    blank = torch.zeros_like(here)
    # frame 0: three of four samples put the square where the candidate does -> keep it;
    # frame 1: the samples scatter it over four places -> the blank frame is the safer bet
    samples = torch.stack([torch.stack([here, here]), torch.stack([here, there]),
                           torch.stack([here, elsewhere]), torch.stack([there, square(top=9, left=2)])])[:, None]
    candidates = torch.stack([torch.stack([here, here]), torch.stack([blank, blank]), torch.stack([there, there])])[:, None]
    chosen = mbr_frames(candidates, samples)
    assert chosen.shape == (1, 2, 1, 16, 16)
    assert torch.equal(chosen[0, 0], here) and torch.equal(chosen[0, 1], blank)
    # equal expected SSIM: the earlier candidate (the argmax frame) wins
    assert torch.equal(mbr_frames(torch.stack([candidates[0], candidates[0]]), samples), candidates[0])


def test_mbr_prediction_is_the_expected_ssim_choice_among_argmax_blank_and_last_frames():
    from vpbench.metrics.basic import ssim_per_frame

    model, data, _ = build(["model.mbr_samples=3", "model.mbr_temperature=2.0"])
    model.eval()
    context, _ = clips(data, 2)
    torch.manual_seed(7)
    chosen = model.predict(context, 3)

    def twin(**fields):
        other = SHRVQVAE(dataclasses.replace(model.config, **fields), model.spec)
        other.load_state_dict(model.state_dict())
        return other.eval()

    argmax = twin(mbr_samples=0).predict(context, 3)
    torch.manual_seed(7)  # the same draws: the samples are one batch of 3 copies of each clip
    samples = twin(mbr_samples=0, temperature=2.0).predict(context.repeat(3, 1, 1, 1, 1), 3).reshape(3, *argmax.shape)
    assert not torch.equal(samples[0], samples[1])  # real draws, not argmax copies
    candidates = [argmax, torch.zeros_like(argmax), context[:, -1:].expand_as(argmax)]
    score = torch.stack([torch.stack([ssim_per_frame(c, s) for s in samples]).mean(0) for c in candidates])
    expected = torch.stack(candidates)[score.argmax(0), torch.arange(2)[:, None], torch.arange(3)[None]]
    assert torch.equal(chosen, expected)
    with pytest.raises(C.ConfigError, match="mbr_samples must be >= 0"):
        build(["model.mbr_samples=-1"])


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("prior", ["pixelcnn", "vpn"])
def test_whole_model_overfits_a_handful_of_clips(tmp_path, prior):
    model, data, cfg = build([f"model.prior={prior}"])
    Trainer(model, data, cfg.train, Job.of(cfg), tmp_path / "r", torch.device("cpu")).fit()
    log = read_log(tmp_path / "r")
    ae = [r for r in log if r.get("stage") == "autoencoder" and "recon" in r]
    prior = [r for r in log if r.get("stage") == "prior" and "ce" in r]
    assert ae[-1]["recon"] < ae[0]["recon"] / 5
    assert prior[-1]["ce"] < prior[0]["ce"] / 20 and prior[-1]["acc"] > 0.99
    assert "perplexity1" in ae[-1] and "perplexity2" in ae[-1]  # per-level codebook use is logged
    model.eval()
    context, future = clips(data)
    mse = ((model.predict(context, 4) - future) ** 2).mean()
    blank = (future**2).mean()
    assert mse < 0.2 * blank, (float(mse), float(blank))


def test_training_resumes_exactly_across_stages(tmp_path):
    from tests.test_trainer import assert_same_weights, interrupt

    sets = ["model.ae_steps=40", "model.prior_steps=30", "model.joint_steps=10", "train.ckpt_every=7"]
    full, data, cfg = build(sets)
    Trainer(full, data, cfg.train, Job.of(cfg), tmp_path / "full", torch.device("cpu")).fit()
    for stop, crash in [(55, False), (23, True)]:
        model, _, _ = build(sets)
        interrupt(Trainer(model, data, cfg.train, Job.of(cfg), tmp_path / f"s{stop}", torch.device("cpu")), stop, crash)
        resumed, _, _ = build(sets)
        Trainer(resumed, data, cfg.train, Job.of(cfg), tmp_path / f"s{stop}", torch.device("cpu")).fit(resume=True)
        assert_same_weights(full, resumed)


def test_shrvqvae_runs_end_to_end_on_kth(kth_root, tmp_path):
    """KTH protocol (real annotations, real AVI files) through training, metrics and report."""
    from vpbench import runs
    from vpbench.plugins import get_harness

    sets = [s for s in TINY if not s.startswith("data.")] + [
        "data.size=32", "data.n_in=3", "data.n_out=3", "data.train_persons=1,2", "data.val_persons=15",
        "data.test_persons=17", "data.actions=boxing,running", "model.ae_steps=20", "model.prior_steps=10",
        "model.joint_steps=4", "eval.max_clips=4", "eval.examples=1", "eval.bootstrap=20", "eval.speed=false"]
    run = runs.prepare(get_harness(), "shrvqvae", dataset="kth", sets=sets, out=tmp_path / "run", data_dir=kth_root)
    data = runs.build_dataset(run)
    model = runs.train(run, data)
    table = runs.evaluate(run, model, data)
    row = table.query("metric == 'ssim' and horizon == 'all'").iloc[0]
    assert row["dataset"] == "kth" and row["n_clips"] == 4 and 0 < row["value"] <= 1
    assert len(table.query("metric == 'mse' and horizon != 'all'")) == 3
    assert "persons train 01-02" in (tmp_path / "run" / "report.md").read_text()


@pytest.mark.parametrize("prior", ["pixelcnn", "vpn"])
def test_scheduled_sampling_swaps_only_future_frames_for_own_predictions(prior):
    model, data, _ = build(["model.scheduled_sampling=1.0", f"model.prior={prior}"])
    train_mode(model, model.stages()[1])
    context, future = clips(data, 2)
    local = model.encode_clip(torch.cat([context, future], 1))
    glob = model.to_global(local)
    exposed = model._exposed(local, glob, n_in=4)
    assert torch.equal(exposed[:, :4], local[:, :4])  # context frames untouched
    assert torch.equal(exposed[:, 4:], model.prior_logits(glob).argmax(3)[:, 4:])  # p = 1: every future frame predicted
    model2, _, _ = build(["model.scheduled_sampling=0.0", f"model.prior={prior}"])
    model2.train()
    loss = model2.training_step((context, future), "prior")["loss"]
    loss_ss = model.training_step((context, future), "prior")["loss"]
    assert torch.isfinite(loss) and torch.isfinite(loss_ss)


@pytest.mark.parametrize("prior", ["pixelcnn", "vpn"])
def test_exposure_passes_converge_to_the_greedy_rollout(prior):
    """Parallel scheduled sampling with every future frame swapped is a Jacobi iteration on the
    greedy rollout: one pass is the one-step prediction, enough passes give the rollout itself."""
    model, data, _ = build(["model.scheduled_sampling=1.0", "data.size=16", "data.glyph_size=8", "data.n_out=2",
                            f"model.prior={prior}"])
    train_mode(model, model.stages()[1])
    context, future = clips(data, 2)
    local = model.encode_clip(torch.cat([context, future], 1))
    glob = model.to_global(local)
    rollout = model.generate(glob[:, :4], 2, model._chooser(context.device))
    n_future = rollout[0].numel()  # codes per clip: the Jacobi bound on passes
    one = model._exposed(local, glob, n_in=4)
    assert torch.equal(one[:, 4:], model.prior_logits(glob).argmax(3)[:, 4:])  # default: one pass
    model.config = dataclasses.replace(model.config, exposure_passes=n_future)
    exposed = model._exposed(local, glob, n_in=4)
    assert torch.equal(exposed[:, :4], local[:, :4])
    assert torch.equal(exposed[:, 4:], rollout)
    assert not torch.equal(one[:, 4:], rollout)  # the rollout differs from one-step predictions here
    with pytest.raises(C.ConfigError, match="exposure_passes"):
        build(["model.exposure_passes=0"])


def test_clamp_output_trains_on_clamped_frames_with_a_straight_through_gradient():
    model, _, _ = build(["model.output=clamp"])
    y = torch.tensor([-0.5, 0.2, 1.7], requires_grad=True)
    out = model.output_frames(y)
    torch.testing.assert_close(out, torch.tensor([0.0, 0.2, 1.0]))
    # a background pixel below 0 is free (no loss); one clamped on the wrong side still learns
    loss = ((out - torch.tensor([0.0, 0.2, 0.0])) ** 2).sum()
    (grad,) = torch.autograd.grad(loss, y)
    torch.testing.assert_close(grad, torch.tensor([0.0, 0.0, 2.0]))
    linear, _, _ = build()
    assert linear.output_frames(y) is y


def test_the_generation_benchmark_refuses_counts_it_cannot_time():
    import argparse

    from vpbench_shrvqvae.benchmarks import batches, positive

    assert positive("3") == 3 and batches("1,100") == [1, 100]
    for bad in ("0", "-2"):
        with pytest.raises(argparse.ArgumentTypeError, match="not a positive integer"):
            positive(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="0 is not"):
        batches("1,0")
    with pytest.raises(ValueError):
        batches("x")
