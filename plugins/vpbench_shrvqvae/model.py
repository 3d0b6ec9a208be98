"""S-HR-VQVAE (Adiban, Stefanov, Siniscalchi, Salvi; arXiv 2307.06701) for vpbench.

Sequential Hierarchical Residual VQ-VAE: HR-VQVAE (Adiban et al., BMVC 2022, arXiv 2208.04554;
``vpbench.layers.hrvq``) encodes each frame into a tree of discrete codes, an autoregressive
prior predicts the codes of future frames from those of the context, the decoder turns codes
back into frames, and a joint stage adapts decoder and prior together:
``L = CE(future codes) + lambda * ||D(e_hat) - x_future||^2``.

Stages: ``autoencoder`` (frames of the training clips), ``prior`` (autoencoder frozen,
teacher-forced cross-entropy on the future codes), ``joint`` (prior and decoder; encoder too
with ``joint_unfreeze``; codebooks stay frozen after the autoencoder stage).

Departures from the paper (its method section was not available; choices follow the abstract,
the first author's public code and VQ-VAE / PixelCNN practice; each is a config field, and
``RESULTS.md`` beside this file has the measurements behind them):

- encoder / decoder: two (``downsample=8``: three) stride-2 convolutions and ``res_blocks``
  residual blocks, mirrored; linear output clamped at prediction, or ``output=clamp``, which
  trains through the clamp with a straight-through gradient (no background haze);
- quantiser: EMA codebooks (decay 0.99), beta 0.25, level-1 codewords initialised from the
  first batch, deeper levels near zero, dead codewords restarted from routed residuals;
- prior ``pixelcnn`` (:mod:`vpbench_shrvqvae.prior`, the paper's): masked 3-D convolutions with
  *factorised* causal spatiotemporal attention instead of full attention;
- prior ``vpn`` (:mod:`vpbench_shrvqvae.vpn`, not in the paper): a ConvLSTM stream over whole
  past frames conditions a masked spatial PixelCNN (Kalchbrenner et al. 2016), with the frozen
  codewords as inputs;
- prior training: optional context-frame loss and parallel scheduled sampling in code space
  (Duckworth et al. 2019, arXiv 1906.04331), off by default;
- joint stage: ``e_hat`` from the prior's teacher-forced distribution under the true parent
  codeword (straight-through Gumbel-softmax or softmax); lambda 1 (a third-party reading used
  0.11); with AdamW lambda weighs the two terms in the prior's gradient, not the decoder's step;
- generation: argmax or temperature sampling, restricted to codewords seen as prior-training
  targets; cached incremental generation, for ``vpn`` by wavefronts of independent positions
  (the default) or one position at a time (Gumbel-max sampling with noise drawn per frame),
  both proven identical to the naive path;
- minimum-Bayes-risk frame choice (``mbr_samples``, off by default): per frame, the candidate
  (argmax frame, blank frame, last context frame) with the highest mean SSIM against K sampled
  rollouts; the ground truth is never seen.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

import vpbench
from vpbench import ConfigError, DataSpec, Stage, autocast_off, expected_ssim
from vpbench.layers.hrvq import HRVQ
from vpbench_shrvqvae.prior import STPixelCNN
from vpbench_shrvqvae.vpn import VPNPrior


# -- blocks -----------------------------------------------------------------------------
def mbr_frames(candidates: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
    """Minimum-Bayes-risk choice under SSIM: for every clip and frame, the candidate
    ``(C, B, T, ch, H, W)`` with the highest mean SSIM against the samples ``(K, B, T, ch, H, W)``
    (ties go to the earlier candidate) -> ``(B, T, ch, H, W)``."""
    best = expected_ssim(candidates, samples).argmax(0)  # (B, T)
    return candidates.gather(0, best[None, :, :, None, None, None].expand_as(candidates[:1]))[0]


class ResBlock(nn.Module):
    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, hidden, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(hidden, channels, 1))

    def forward(self, x):
        return x + self.net(x)


def encoder(c: SHRVQVAEConfig, channels: int) -> nn.Sequential:
    h = c.hidden
    layers = [nn.Conv2d(channels, h // 2, 4, 2, 1), nn.ReLU(), nn.Conv2d(h // 2, h, 4, 2, 1), nn.ReLU()]
    if c.downsample == 8:
        layers += [nn.Conv2d(h, h, 4, 2, 1), nn.ReLU()]
    layers += [nn.Conv2d(h, h, 3, padding=1)] + [ResBlock(h, c.res_hidden) for _ in range(c.res_blocks)]
    return nn.Sequential(*layers, nn.ReLU(), nn.Conv2d(h, c.embed_dim, 1))


def decoder(c: SHRVQVAEConfig, channels: int) -> nn.Sequential:
    h = c.hidden
    layers = [nn.Conv2d(c.embed_dim, h, 3, padding=1)] + [ResBlock(h, c.res_hidden) for _ in range(c.res_blocks)]
    layers += [nn.ReLU()]
    if c.downsample == 8:
        layers += [nn.ConvTranspose2d(h, h, 4, 2, 1), nn.ReLU()]
    layers += [nn.ConvTranspose2d(h, h // 2, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(h // 2, channels, 4, 2, 1)]
    if c.output == "sigmoid":
        layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


# -- config -----------------------------------------------------------------------------
@dataclass(frozen=True)
class SHRVQVAEConfig:
    # frame autoencoder (HR-VQVAE)
    hidden: int = 128  # channels of the encoder / decoder
    res_blocks: int = 2  # residual blocks in encoder and decoder
    res_hidden: int = 32  # channels inside a residual block
    embed_dim: int = 64  # D, the codeword dimension
    downsample: Literal[4, 8] = 4  # spatial downsampling of the latent grid
    levels: int = 3  # n, levels of the codebook tree
    codebook_size: int = 16  # M, codewords per codebook
    quantizer: Literal["tree", "residual", "flat"] = "tree"  # tree (HR-VQ), plain residual VQ, or one flat codebook of M^n
    codebook_update: Literal["ema", "loss"] = "ema"  # EMA updates or a codebook loss
    beta: float = 0.25  # commitment weight
    ema_decay: float = 0.99  # EMA decay of codebook statistics
    child_init: float = 1e-3  # std of the initial codewords of levels >= 2 (near zero: harmless if never trained)
    dead_after: int = 200  # a codeword unused this many steps is dead
    restart_every: int = 50  # steps between dead-codeword restarts
    ae_frames: int = 4  # frames per clip used in an autoencoder step
    output: Literal["linear", "sigmoid", "clamp"] = "linear"  # decoder output; linear: clamped to [0, 1] at prediction
    # only; clamp: also in training, with a straight-through gradient
    # prior: the paper's ST-PixelCNN, or a VPN prior (ConvLSTM stream over past frames + masked spatial PixelCNN)
    prior: Literal["pixelcnn", "vpn"] = "pixelcnn"
    stream_hidden: int = 64  # vpn: channels of the ConvLSTM stream
    stream_layers: int = 2  # vpn: ConvLSTM layers
    stream_kernel: int = 3  # vpn: kernel of the stream's convolutions
    prior_embed: int = 16  # embedding channels per level
    prior_hidden: int = 32  # hidden channels per level group
    prior_blocks: int = 8  # gated residual blocks
    kernel_time: int = 3  # temporal kernel of the masked convolutions
    kernel_space: int = 3  # spatial kernel of the gated blocks
    first_kernel_space: int = 5  # spatial kernel of the first (mask A) convolution
    attn_every: int = 4  # a causal attention block after every N gated blocks (0: none)
    attn_heads: int = 1  # attention heads per level group
    prior_context_loss: bool = False  # also train the prior on the context frames' codes
    scheduled_sampling: float = 0.0  # chance that a future frame's input codes are the prior's own predictions
    exposure_passes: int = 1  # parallel passes making those predictions: k passes expose up to k-step rollout errors
    # joint stage
    lam: float = 1.0  # weight of the pixel loss in the joint stage (0: disjoint training)
    relaxation: Literal["gumbel", "softmax"] = "gumbel"  # differentiable code choice in the joint stage
    tau: float = 1.0  # temperature of the relaxation
    joint_unfreeze: bool = False  # also train the encoder in the joint stage
    # generation
    temperature: float = 0.0  # 0: argmax; > 0: sample with this temperature
    cached: bool = True  # cached incremental generation (False: naive, for checks only)
    wavefront: bool = True  # vpn: decode a wavefront of independent positions per step; the same codes as
    # one position at a time, in fewer steps
    parallel_decoding: bool = False  # retired with fixed-point (Jacobi) decoding (RESULTS.md): ignored, kept so that
    # the configs of runs saved with it load (its codes were the wavefront path's)
    # minimum-Bayes-risk frame choice (0: off): K rollouts sampled at mbr_temperature estimate each
    # frame's expected SSIM for the argmax frame, a blank frame and the last context frame; the best is drawn
    mbr_samples: int = 0
    mbr_temperature: float = 1.0
    # budgets (optimiser steps, learning rates, batch sizes; 0 batch = train.batch_size)
    ae_steps: int = 20000
    ae_lr: float = 3e-4
    ae_batch: int = 0
    prior_steps: int = 40000
    prior_lr: float = 3e-4
    prior_batch: int = 0
    joint_steps: int = 5000
    joint_lr: float = 1e-4
    joint_batch: int = 0

    def __post_init__(self) -> None:
        vpbench.positive(self, "hidden", "embed_dim", "levels", "codebook_size", "prior_embed", "prior_hidden", "prior_blocks",
                         "kernel_time", "ae_frames", "stream_hidden", "stream_layers")
        for name in ("kernel_space", "first_kernel_space", "stream_kernel"):
            if getattr(self, name) % 2 == 0:
                raise ConfigError(f"{name} must be odd")
        if self.lam < 0 or self.tau <= 0 or self.temperature < 0:
            raise ConfigError("lam and temperature must be >= 0 and tau > 0")
        if not 0 <= self.scheduled_sampling <= 1:
            raise ConfigError("scheduled_sampling must be in [0, 1]")
        if self.mbr_samples < 0 or self.mbr_temperature <= 0:
            raise ConfigError("mbr_samples must be >= 0 and mbr_temperature > 0")
        if self.exposure_passes < 1:
            raise ConfigError("exposure_passes must be >= 1")
        if self.quantizer == "tree" and self.codebook_size**self.levels > 2**22:
            raise ConfigError("codebook_size ** levels is too large for the tree (> 4M codewords)")


# -- model ------------------------------------------------------------------------------
class SHRVQVAE(nn.Module):
    name = "shrvqvae"
    version = "0.1.0"
    description = "S-HR-VQVAE: hierarchical residual VQ-VAE codes + autoregressive prior (ST-PixelCNN or VPN) + joint training"
    Config = SHRVQVAEConfig

    # config fields that influence only this stage and later ones: an ablation over them
    # trains the earlier stages once and shares them (`vpbench ablate -m shrvqvae --lambda 0,1`)
    late_fields = {
        "prior": ("prior", "stream_hidden", "stream_layers", "stream_kernel", "prior_embed", "prior_hidden",
                  "prior_blocks", "kernel_time", "kernel_space", "first_kernel_space", "attn_every", "attn_heads",
                  "prior_context_loss", "scheduled_sampling", "exposure_passes", "prior_steps", "prior_lr",
                  "prior_batch", "lam", "relaxation", "tau", "joint_unfreeze", "joint_steps", "joint_lr",
                  "joint_batch"),
        "joint": ("lam", "relaxation", "tau", "joint_unfreeze", "joint_steps", "joint_lr", "joint_batch"),
    }
    # config fields that change only how the trained model predicts: they are not part of the run's
    # identity, so `--set model.mbr_samples=8` evaluates the trained weights again instead of retraining
    predict_fields = ("temperature", "cached", "wavefront", "parallel_decoding", "mbr_samples", "mbr_temperature")
    # `vpbench ablate -m shrvqvae --lambda 0,1` is `--grid lam=0,1`
    ablation_shortcuts = {"lambda": "lam", "levels": "levels", "codebook-size": "codebook_size", "quantizer": "quantizer"}

    def __init__(self, config: SHRVQVAEConfig, spec: DataSpec):
        super().__init__()
        c = self.config = config
        self.spec = spec
        if spec.height % c.downsample or spec.width % c.downsample:
            raise ConfigError(f"frames of {spec.height}x{spec.width} do not divide by downsample={c.downsample}")
        self.latent_hw = (spec.height // c.downsample, spec.width // c.downsample)
        self.encoder = encoder(c, spec.channels)
        self.decoder = decoder(c, spec.channels)
        self.quantizer = HRVQ(levels=c.levels, codebook_size=c.codebook_size, dim=c.embed_dim, mode=c.quantizer,
                              beta=c.beta, update=c.codebook_update, decay=c.ema_decay, child_init=c.child_init,
                              dead_after=c.dead_after, restart_every=c.restart_every)
        q = self.quantizer
        if c.prior == "vpn":
            self.prior = VPNPrior(levels=q.levels, classes=q.classes, dim=c.embed_dim, latent_hw=self.latent_hw,
                                  embed=c.prior_embed, hidden=c.prior_hidden, blocks=c.prior_blocks,
                                  kernel_space=c.kernel_space, first_kernel_space=c.first_kernel_space,
                                  stream_hidden=c.stream_hidden, stream_layers=c.stream_layers,
                                  stream_kernel=c.stream_kernel, table_sizes=q.sizes)
        else:
            self.prior = STPixelCNN(levels=q.levels, table_sizes=q.sizes, classes=q.classes, latent_hw=self.latent_hw,
                                    embed=c.prior_embed, hidden=c.prior_hidden, blocks=c.prior_blocks,
                                    kernel_time=c.kernel_time, kernel_space=c.kernel_space,
                                    first_kernel_space=c.first_kernel_space, attn_every=c.attn_every,
                                    heads_per_group=c.attn_heads)
        for level, size in enumerate(q.sizes):  # codewords seen as prior-training targets
            self.register_buffer(f"prior_seen{level}", torch.zeros(size, dtype=torch.bool))

    # -- stages ---------------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        c = self.config
        autoencoder = lambda: itertools.chain(self.encoder.parameters(), self.decoder.parameters(),  # noqa: E731
                                              self.quantizer.parameters())
        joint = lambda: itertools.chain(self.prior.parameters(), self.decoder.parameters(),  # noqa: E731
                                        self.encoder.parameters() if c.joint_unfreeze else [])
        codebooks = lambda: [self.quantizer]  # noqa: E731  (frozen after the autoencoder stage)
        return [
            Stage("autoencoder", autoencoder, c.ae_steps, c.ae_lr, batch_size=c.ae_batch or None),
            Stage("prior", self.prior.parameters, c.prior_steps, c.prior_lr, batch_size=c.prior_batch or None,
                  warmup_steps=min(500, c.prior_steps // 10), frozen=codebooks),
            Stage("joint", joint, c.joint_steps, c.joint_lr, batch_size=c.joint_batch or None, frozen=codebooks),
        ]

    # -- codes ----------------------------------------------------------------------------
    def encode_clip(self, clip: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, H, W)`` -> local codes ``(B, T, n, h, w)``."""
        b, t = clip.shape[:2]
        out = self.quantizer(self.encoder(clip.flatten(0, 1)))
        return out.codes.reshape(b, t, *out.codes.shape[1:])

    def to_global(self, local: torch.Tensor) -> torch.Tensor:
        """Local codes ``(B, T, n, h, w)`` -> global (path) indices, same shape."""
        return self.quantizer.global_codes(local.movedim(2, -1)).movedim(-1, 2)

    def decode_codes(self, local: torch.Tensor) -> torch.Tensor:
        """Local codes ``(B, T, n, h, w)`` -> frames ``(B, T, C, H, W)``."""
        b, t = local.shape[:2]
        frames = self.decoder(self.quantizer.decode_codes(local.flatten(0, 1)))
        return frames.reshape(b, t, *frames.shape[1:])

    def output_frames(self, y: torch.Tensor) -> torch.Tensor:
        """What the pixel losses see: the decoder output, or (``output=clamp``) its clamp to
        [0, 1] with the gradient of the identity (straight-through)."""
        if self.config.output == "clamp":
            return y + (y.clamp(0, 1) - y).detach()
        return y

    # -- training -------------------------------------------------------------------------
    def training_step(self, batch, stage: str) -> dict:
        context, future = batch
        if stage == "autoencoder":
            return self._autoencoder_step(torch.cat([context, future], 1))
        if stage in ("prior", "joint"):
            return self._prior_step(context, future, joint=stage == "joint")
        raise ValueError(f"unknown stage {stage}")

    def _autoencoder_step(self, clip: torch.Tensor) -> dict:
        b, t = clip.shape[:2]
        k = min(self.config.ae_frames, t)
        pick = torch.rand(b, t, device=clip.device).argsort(1)[:, :k]
        frames = clip[torch.arange(b, device=clip.device)[:, None], pick].flatten(0, 1)
        q = self.quantizer(self.encoder(frames))
        recon = F.mse_loss(self.output_frames(self.decoder(q.quantized)), frames)
        out = {"loss": recon + q.loss, "recon": recon.detach(), "vq": q.loss.detach()}
        out.update({k: v for k, v in q.stats.items()})
        return out

    def _prior_step(self, context: torch.Tensor, future: torch.Tensor, joint: bool) -> dict:
        c = self.config
        n_in = context.shape[1]
        with torch.no_grad(), autocast_off(context.device):  # the codes evaluation will see, bit for bit
            local = self.encode_clip(torch.cat([context, future], 1).float())
            glob = self.to_global(local)
        if self.training:
            self._mark_seen(glob[:, n_in:] if not c.prior_context_loss else glob)
        if self.training and c.scheduled_sampling > 0:
            glob = self.to_global(self._exposed(local, glob, n_in))
        logits = self.prior_logits(glob)  # (B, T, n, classes, h, w)
        first = 1 if c.prior_context_loss else n_in
        target, scored = local[:, first:], logits[:, first:]
        ce = F.cross_entropy(scored.movedim(3, 1), target)
        acc = (scored.argmax(3) == target).float().mean()
        out = {"loss": ce, "ce": ce.detach(), "acc": acc}
        if joint and c.lam > 0:
            e_hat = self._relaxed_codewords(logits[:, n_in:], glob[:, n_in:])
            pred = self.output_frames(self.decoder(e_hat))
            pixel = F.mse_loss(pred, future.flatten(0, 1))
            out.update(loss=ce + c.lam * pixel, pixel=pixel.detach())
        return out

    @torch.no_grad()
    def _exposed(self, local: torch.Tensor, glob: torch.Tensor, n_in: int) -> torch.Tensor:
        """Parallel scheduled sampling in code space: each future frame's input codes are, with
        probability ``scheduled_sampling``, the prior's own predictions (so it learns to continue
        from its own mistakes, as in a rollout); targets stay the true codes.

        One pass predicts from the true codes (one-step errors only). Each further pass predicts
        again from the previous pass's mixture, so the swapped frames see errors that compound
        over up to ``exposure_passes`` steps, as in Duckworth et al. (2019), "Parallel scheduled
        sampling" (arXiv 1906.04331). With every future frame swapped, the passes are a Jacobi
        iteration whose fixed point is the greedy rollout: it is reached after at most as many
        passes as there are future codes (tested)."""
        b, t = local.shape[:2]
        swap = torch.rand(b, t, device=local.device) < self.config.scheduled_sampling
        swap[:, :n_in] = False
        swap = swap[:, :, None, None, None]
        mixed = local
        for k in range(self.config.exposure_passes):
            inputs = self.to_global(mixed) if k else glob  # the caller maps the last pass itself
            mixed = torch.where(swap, self.prior_logits(inputs).argmax(3), local)  # (B, T, n, h, w)
        return mixed

    def prior_logits(self, glob: torch.Tensor) -> torch.Tensor:
        """Global codes ``(B, T, n, h, w)`` -> the prior's logits ``(B, T, n, classes, h, w)``."""
        if self.config.prior == "vpn":
            g = glob.permute(0, 1, 3, 4, 2)
            return self.prior(g, self.quantizer.cumulative_codewords(g))
        return self.prior(glob)

    def generate(self, glob: torch.Tensor, n_out: int, choose) -> torch.Tensor:
        """Future local codes ``(B, n_out, n, h, w)`` after the context's global codes."""
        prior, to_global = self.prior, self.quantizer.global_codes
        generate = prior.generate if self.config.cached else prior.generate_naive
        if self.config.prior == "vpn":
            c = self.config
            extra = {"wavefront": c.wavefront} if c.cached else {}
            return generate(glob, n_out, choose, to_global, self.quantizer.cumulative_codewords, **extra)
        return generate(glob, n_out, choose, to_global)

    @torch.no_grad()
    def _mark_seen(self, glob: torch.Tensor) -> None:
        for level in range(self.quantizer.levels):
            getattr(self, f"prior_seen{level}")[glob[:, :, level].flatten()] = True

    def _relaxed_codewords(self, logits: torch.Tensor, glob: torch.Tensor) -> torch.Tensor:
        """Differentiable codeword sums from the predicted distributions, level by level
        under the true parent codeword. ``logits (B, T, n, K, h, w)`` -> ``(B*T, D, h, w)``."""
        q, c = self.quantizer, self.config
        total = 0.0
        for level in range(q.levels):
            lg = logits[:, :, level].movedim(2, -1)  # (B, T, h, w, K)
            if c.relaxation == "gumbel":
                weights = F.gumbel_softmax(lg, tau=c.tau, hard=True)
            else:
                weights = torch.softmax(lg / c.tau, -1)
            parent = glob[:, :, level - 1] if level else None
            if parent is not None and q.mode == "tree":
                cand = q.candidates(level, parent.flatten()).reshape(*parent.shape, q.M, q.dim)
            else:
                cand = q.codebooks[level].table
            total = total + (torch.einsum("bthwk,bthwkd->bthwd", weights, cand) if cand.dim() == 6
                             else weights @ cand)
        return total.flatten(0, 1).permute(0, 3, 1, 2)

    # -- prediction -----------------------------------------------------------------------
    def forbidden_children(self) -> list[torch.Tensor]:
        """Per level, the codes the prior never saw in training, as a mask ``(parents, M)`` (tree
        mode below the top level: a row per parent's global code) or ``(1, classes)``; a parent
        with no seen child (an untrained prior) forbids none."""
        q, out = self.quantizer, []
        for level in range(q.levels):
            seen = getattr(self, f"prior_seen{level}")
            seen = seen.view(-1, q.M) if level and q.mode == "tree" else seen[None]
            out.append(~seen & seen.any(-1, keepdim=True))
        return out

    def _chooser(self, device: torch.device, temperature: float | None = None):
        """Argmax, or sampling from the global RNG (the evaluator seeds it per batch and sample)."""
        temperature = self.config.temperature if temperature is None else temperature
        forbidden = [mask.to(device) for mask in self.forbidden_children()]
        by_parent = self.quantizer.mode == "tree"

        def choose(logits: torch.Tensor, level: int, parent: torch.Tensor | None,
                   noise: torch.Tensor | None = None) -> torch.Tensor:
            mask = forbidden[level].index_select(0, parent) if level and by_parent else forbidden[level]
            logits = logits.float().masked_fill(mask, float("-inf"))
            if temperature == 0:
                return logits.argmax(-1)
            if noise is not None:  # Gumbel-max with the caller's noise: a sample of softmax(logits / T)
                return (logits / temperature + noise).argmax(-1)
            probs = torch.softmax(logits / temperature, -1)
            return torch.multinomial(probs, 1)[:, 0]

        return choose

    @torch.no_grad()
    def predict(self, context: torch.Tensor, n_out: int) -> torch.Tensor:
        local = self.encode_clip(context)
        glob = self.to_global(local)
        future = self.generate(glob, n_out, self._chooser(context.device))
        frames = self.decode_codes(future).clamp(0, 1)
        k = self.config.mbr_samples
        if k == 0:
            return frames
        # minimum-Bayes-risk choice per frame: K sampled rollouts (one batch) stand for the
        # predictive distribution; each future frame is the candidate with the highest mean SSIM
        # against them (argmax frame, blank frame, last context frame)
        sampled = self.generate(glob.repeat(k, *([1] * (glob.dim() - 1))), n_out,
                                self._chooser(context.device, self.config.mbr_temperature))
        b = context.shape[0]
        samples = torch.stack([self.decode_codes(sampled[i * b:(i + 1) * b]).clamp(0, 1) for i in range(k)])
        candidates = torch.stack([frames, torch.zeros_like(frames), context[:, -1:].expand_as(frames).to(frames.dtype)])
        return mbr_frames(candidates, samples)


# -- presets ----------------------------------------------------------------------------
SMOKE = {
    "model": {"hidden": 32, "res_blocks": 1, "res_hidden": 16, "embed_dim": 16, "levels": 2, "codebook_size": 8,
              "prior_embed": 8, "prior_hidden": 8, "prior_blocks": 2, "attn_every": 2, "first_kernel_space": 3,
              "dead_after": 40, "restart_every": 20, "ae_steps": 150, "ae_lr": 2e-3, "prior_steps": 100,
              "prior_lr": 2e-3, "joint_steps": 20, "joint_lr": 5e-4},
    "data": {"n_train": 256, "n_val": 32, "n_test": 32},
    "train": {"batch_size": 8, "val_clips": 16, "ckpt_every": 50},
    # FLOPs are counted (seconds); latency is not timed, as a clip takes ~5 s at batch 1 on 2 CPU
    # cores: `vpbench profile shrvqvae --preset smoke` times it on demand
    "eval": {"batch_size": 16, "examples": 2, "speed": False},
}
# Moving MNIST on 2 CPU cores, sized for the compute-matched report (reports/mmnist-cpu-matched:
# `--budget 4e14`); what was tried before it and how each choice was measured: RESULTS.md
CPU = {
    "dataset_name": "mmnist",
    "model": {"hidden": 64, "embed_dim": 32, "levels": 2, "codebook_size": 16, "downsample": 8, "output": "clamp",
              "prior": "vpn", "stream_hidden": 64, "stream_layers": 2, "prior_embed": 16, "prior_hidden": 32,
              "prior_blocks": 4, "prior_context_loss": True, "scheduled_sampling": 0.25,
              "ae_steps": 1500, "ae_lr": 1e-3, "ae_batch": 32, "prior_steps": 3000, "prior_lr": 1e-3, "prior_batch": 8,
              "joint_steps": 200, "joint_lr": 2e-4, "joint_batch": 8, "dead_after": 100, "restart_every": 25},
    # bf16 autocast where the CPU has native bf16 (AMX / AVX512-BF16): prior steps ~1.7x faster
    "train": {"val_clips": 32, "ckpt_every": 100, "amp": "on"},
    "eval": {"max_clips": 500, "batch_size": 100, "examples": 3},
}
PAPER = {
    "model": {"hidden": 128, "embed_dim": 64, "levels": 3, "codebook_size": 16, "prior_embed": 32, "prior_hidden": 64,
              "prior_blocks": 12, "attn_every": 4, "attn_heads": 2, "ae_steps": 100000, "prior_steps": 200000,
              "joint_steps": 20000},
    "train": {"batch_size": 32, "amp": "auto", "val_every": 5000, "ckpt_every": 2000, "num_workers": 4},
}
SHRVQVAE.presets = {
    "smoke": SMOKE,
    "cpu": CPU,
    "paper": PAPER,
    "paper@kth": {"dataset_name": "kth", "model": {"prior_blocks": 12}, "train": {"batch_size": 16}},
    "paper@mmnist": {"model": {"prior_blocks": 12}},
}
