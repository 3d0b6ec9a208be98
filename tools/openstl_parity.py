"""vpbench's baselines against the authors' own modules, on the same weights: the table the README's parity figures cite.

    python tools/openstl_parity.py --openstl ~/src/OpenSTL [--predformer ~/src/PredFormer] [--models a,b] [--batch 2]

Not part of the test suite: it needs the authors' public source, fetched by you (nothing of it is
copied here), e.g.::

    git clone https://github.com/chengtan9907/OpenSTL ~/src/OpenSTL       # c74deb5 (timm >= 0.9), or
    git -C ~/src/OpenSTL checkout 0a0f36c                                  # OpenSTLv0.3.0 (timm 0.6.13)
    git clone https://github.com/yyyujintang/PredFormer ~/src/PredFormer  # b73c7ae

and ``timm`` for OpenSTL's translators (``pip install --no-deps timm==0.6.13`` for OpenSTLv0.3.0,
the code of the released checkpoints; ``timm==0.9.16`` for c74deb5, whose modules import
``timm.layers``) and ``einops`` for PredFormer; ``torchvision`` is stubbed when absent (timm
imports it, the modules compared never call it). Each author module is built (OpenSTL's own
initialisation, seed 0) from its public config -- the recurrent models and PhyDNet on OpenSTL's
TaxiBJ configs (2 channels, 32x32, 4 -> 4 frames; patch 2 except MAU's 1), the SimVP family on
its Moving MNIST configs (hid_S 64, hid_T 512, N_S 4, N_T 8; 10 -> 10), PredFormer on the
authors' Moving MNIST config (TSST, 10 -> 10) -- its ``state_dict()`` goes through the model's
``import_state_dict`` / ``vpbench.importer.fit`` (what ``vpbench import openstl`` runs) into the
vpbench model, and both predict from the same random clip (``--batch`` clips, uniform in [0, 1]).
``init``: the authors' initial weights; ``perturbed``: every trainable weight plus N(0, 0.02^2)
noise (BatchNorm running means shifted, variances scaled), so that zero-initialised and
layer-scale weights count. Printed per model: the max abs difference of the outputs (unclamped;
the recurrent models' whole ``n_in + n_out - 1``-frame rollout, unpatched) and the largest output,
and for PredRNN.V2 and PhyDNet the difference of their training losses (PredRNN.V2: a random
scheduled-sampling mask of the future inputs; PhyDNet: no teacher forcing). The run's torch,
timm and checkout are printed first. ``--authors-order`` runs vpbench's SimVP translators and
PredFormer in the authors' operation order (translator in contiguous layout, explicit-softmax
attention, HorNet's hand-written LayerNorm) to show that the remaining differences are operation
order; ``--float64`` runs both in float64 (a difference that stays there is not rounding). OpenSTL's
MIM blocks keep their MIM-S cell state from one call into the next; it is cleared before each call
here, as vpbench starts every rollout from zeros.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import subprocess
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

RECURRENT = {  # vpbench model -> OpenSTL model file, class (TaxiBJ configs: 4 x 128, 5x5, patch 2)
    "convlstm": ("convlstm_model", "ConvLSTM_Model"),
    "predrnn": ("predrnn_model", "PredRNN_Model"),
    "predrnnv2": ("predrnnv2_model", "PredRNNv2_Model"),
    "predrnnpp": ("predrnnpp_model", "PredRNNpp_Model"),
    "mim": ("mim_model", "MIM_Model"),
    "e3dlstm": ("e3dlstm_model", "E3DLSTM_Model"),
    "mau": ("mau_model", "MAU_Model"),
}
TRANSLATORS = {  # vpbench translator -> OpenSTL model_type (configs/mmnist/simvp/*.py, TAU.py)
    "incepu": "IncepU", "gsta": "gSTA", "tau": "tau", "van": "van", "poolformer": "poolformer",
    "convnext": "convnext", "convmixer": "convmixer", "mlpmixer": "mlp", "vit": "vit", "swin": "swin",
    "uniformer": "uniformer", "hornet": "hornet", "moganet": "moga",
}
ALL = [*RECURRENT, "phydnet", *(f"simvp:{t}" for t in TRANSLATORS), "predformer"]


class _Anything(type):
    """A stand-in class whose every attribute and call is itself (for an absent torchvision)."""

    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = _Anything(f"{cls.__name__}.{name}", (), {})  # distinct per name (timm keys dicts on them)
        setattr(cls, name, value)
        return value

    def __call__(cls, *args, **kwargs):
        return cls


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, prefixes):
        self.prefixes = prefixes

    def find_spec(self, name, path=None, target=None):
        if any(name == p or name.startswith(p + ".") for p in self.prefixes):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__ = []
        def attribute(attr):
            if attr.startswith("__"):
                raise AttributeError(attr)
            value = _Anything(attr, (), {})
            setattr(module, attr, value)
            return value

        module.__getattr__ = attribute
        return module

    def exec_module(self, module):
        pass


def package(name: str, path: Path, **names) -> types.ModuleType:
    """``name`` as a package over ``path`` without running its ``__init__`` (OpenSTL's imports its trainer)."""
    module = types.ModuleType(name)
    module.__path__ = [str(path)]
    module.__dict__.update(names)
    sys.modules[name] = module
    return module


def load_openstl(root: Path):
    """OpenSTL's ``openstl.modules`` (run), ``openstl.models.*`` and ``openstl.utils.*`` (on demand)."""
    src = root / "openstl"
    package("openstl", src)
    utils = package("openstl.utils", src / "utils")
    for name in ("predrnn_utils", "mmvp_utils"):
        if (src / "utils" / f"{name}.py").is_file():
            module = importlib.import_module(f"openstl.utils.{name}")
            utils.__dict__.update({k: v for k, v in vars(module).items() if not k.startswith("_")})
    importlib.import_module("openstl.modules")
    package("openstl.models", src / "models")
    return lambda name: importlib.import_module(f"openstl.models.{name}")


def load_predformer(root: Path):
    """The authors' Quadruplet-TSST ``PredFormer_Model``: its file and its repo's ``openstl.modules``,
    loaded under OpenSTL's names for the time of the import (both repos call their package ``openstl``)."""
    for name in ("fvcore", "fvcore.nn"):
        sys.modules.setdefault(name, types.SimpleNamespace(FlopCountAnalysis=None, flop_count_table=None))
    names = ("openstl", "openstl.utils", "openstl.modules", "openstl.modules.PredFormer_modules")
    saved = {name: sys.modules.pop(name) for name in names if name in sys.modules}
    try:
        package("openstl", root / "openstl")
        package("openstl.utils", root / "openstl/utils", measure_throughput=None)
        importlib.import_module("openstl.modules")
        spec = importlib.util.spec_from_file_location("predformer_tsst", root / "openstl/models/PredFormer_Quadruplet_TSST.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for name in names:
            sys.modules.pop(name, None)
        sys.modules.update(saved)
    return module


def perturb(module: torch.nn.Module, generator: torch.Generator) -> None:
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad and p.dtype.is_floating_point:
                p.add_(torch.randn(p.shape, generator=generator) * 0.02)
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.add_(torch.randn(b.shape, generator=generator) * 0.02)
            elif name.endswith("running_var"):
                b.mul_(torch.exp(torch.randn(b.shape, generator=generator) * 0.1))


def transfer(cls, cfg, theirs: torch.nn.Module, ours: torch.nn.Module) -> None:
    from vpbench.importer import fit

    fit(ours, cls.import_state_dict("openstl", theirs.state_dict(), cfg), "openstl")


def reshape_patch(x, p):  # OpenSTL's layout, (B, T, H, W, C) -> (B, T, H/p, W/p, p*p*C)
    b, t, h, w, c = x.shape
    return x.reshape(b, t, h // p, p, w // p, p, c).transpose(3, 4).reshape(b, t, h // p, w // p, p * p * c)


def reshape_patch_back(x, p):
    b, t, hp, wp, cpp = x.shape
    c = cpp // (p * p)
    return x.reshape(b, t, hp, wp, p, p, c).transpose(3, 4).reshape(b, t, hp * p, wp * p, c)


def compare_recurrent(name, models, cell, batch, gen):
    from vpbench.plugins import get_harness
    from vpbench.protocols import DataSpec

    file, cls_name = RECURRENT[name]
    p = 1 if name == "mau" else 2
    hidden = [64] * 4 if name == "mau" else [128] * 4
    n_in = n_out = 4
    configs = SimpleNamespace(in_shape=(n_in, 2, 32, 32), patch_size=p, filter_size=5, stride=1, layer_norm=0,
                              pre_seq_length=n_in, aft_seq_length=n_out, total_length=n_in + n_out,
                              reverse_scheduled_sampling=0, decouple_beta=0.1, sr_size=2, tau=5,
                              cell_mode="normal", model_mode="normal", device="cpu")
    torch.manual_seed(0)
    theirs = getattr(models(file), cls_name)(len(hidden), hidden, configs).eval()
    cls = get_harness().models.get(name)
    fields = dict(layers=4, hidden=hidden[0], filter_size=5, patch_size=p)
    if name == "convlstm":
        fields["cell"] = cell
    if name == "mau":
        fields.update(sr_size=2, tau=5)
    cfg = cls.Config(**fields)
    ours = cls(cfg, DataSpec(n_in, n_out, 2, 32, 32)).eval()
    clip = torch.rand(batch, n_in + n_out, 2, 32, 32, generator=gen)
    hp = 32 // p
    rows = []
    for weights in ("init", "perturbed"):
        if weights == "perturbed":
            perturb(theirs, gen)
        transfer(cls, cfg, theirs, ours)
        for module in theirs.modules():  # OpenSTL's MIMBlock keeps its MIM-S cell state from the previous call
            if getattr(module, "convlstm_c", None) is not None:
                module.convlstm_c = None
        with torch.no_grad():
            mask = torch.zeros(batch, n_out - 1, hp, hp, p * p * 2)
            out, _ = theirs(reshape_patch(clip.permute(0, 1, 3, 4, 2), p), mask, return_loss=False)
            if name == "mau":  # MAU_Model returns (B, T, C, H, W) frames (it never patches)
                theirs_frames = out
            else:
                theirs_frames = reshape_patch_back(out, p).permute(0, 1, 4, 2, 3)
            ours_frames = ours.unpatch(ours.rollout(ours.patch(clip), n_in, n_in + n_out))
        row = {"weights": weights, "out": (theirs_frames - ours_frames).abs().max().item(),
               "scale": theirs_frames.abs().max().item()}
        if name == "predrnnv2":  # the training loss: scheduled-sampling mask of the future inputs
            coin = torch.rand(batch, n_out - 1, generator=gen) < 0.5
            with torch.no_grad():
                mask = coin[:, :, None, None, None].float().expand(-1, -1, hp, hp, p * p * 2)
                _, loss = theirs(reshape_patch(clip.permute(0, 1, 3, 4, 2), p), mask)
                use_true = torch.cat([torch.ones(batch, n_in - 1, dtype=torch.bool), coin], 1)
                aux = []
                frames = ours.patch(clip)
                pred = ours.rollout(frames, n_in, n_in + n_out, use_true, aux)
                ours_loss = ours.reconstruction_loss(pred, frames[:, 1:]) + cfg.decouple_beta * torch.stack(aux).mean()
            row.update(loss=(loss - ours_loss).abs().item(), loss_value=loss.item())
        rows.append(row)
    return rows


def compare_phydnet(models, batch, gen):
    from vpbench.plugins import get_harness
    from vpbench.protocols import DataSpec

    n_in = n_out = 4
    configs = SimpleNamespace(in_shape=(n_in, 2, 32, 32), patch_size=2, pre_seq_length=n_in, aft_seq_length=n_out,
                              device="cpu")
    torch.manual_seed(0)
    theirs = models("phydnet_model").PhyDNet_Model(configs).eval()
    constraints = torch.zeros(49, 7, 7)  # OpenSTL's PhyDNet method's: filter 7 * i + j has the moment (i, j)
    for i in range(7):
        for j in range(7):
            constraints[7 * i + j, i, j] = 1
    cls = get_harness().models.get("phydnet")
    cfg = cls.Config(patch_size=2)
    ours = cls(cfg, DataSpec(n_in, n_out, 2, 32, 32)).eval()
    context = torch.rand(batch, n_in, 2, 32, 32, generator=gen)
    future = torch.rand(batch, n_out, 2, 32, 32, generator=gen)
    rows = []
    for weights in ("init", "perturbed"):
        if weights == "perturbed":
            perturb(theirs, gen)
        transfer(cls, cfg, theirs, ours)
        with torch.no_grad():
            pred, _ = theirs.inference(context, future, constraints, return_loss=False)
            ours_pred = ours.rollout(context, n_out)[1]
            loss = theirs(context, future, constraints, teacher_forcing_ratio=0.0)  # no teacher forcing
            ours_loss = ours.training_step((context, future), "val")["loss"]
        rows.append({"weights": weights, "out": (pred - ours_pred).abs().max().item(), "scale": pred.abs().max().item(),
                     "loss": (loss - ours_loss).abs().item(), "loss_value": loss.item()})
    return rows


def explicit_attention(scale_first: bool):
    """``scaled_dot_product_attention`` in the authors' operation order: timm 0.6's ViT, OpenSTL's
    Uniformer and PredFormer's ``softmax((q @ k^T) * scale + bias) @ v``; timm 0.6's Swin scales
    ``q`` first: ``softmax((q * scale) @ k^T + bias) @ v``."""
    def attention(q, k, v, attn_mask=None, **kwargs):
        scale = q.shape[-1] ** -0.5
        attn = (q * scale) @ k.transpose(-2, -1) if scale_first else (q @ k.transpose(-2, -1)) * scale
        if attn_mask is not None:
            attn = attn + attn_mask
        return attn.softmax(dim=-1) @ v
    return attention


def channel_layer_norm(norm):
    """OpenSTL's hand-written channels-first LayerNorm (HorNet), on ``norm``'s weights."""
    def forward(x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + norm.eps)
        return norm.weight[:, None, None] * x + norm.bias[:, None, None]
    return forward


def authors_order(ours, translator: str):
    """Put ``ours`` (a SimVP) in the authors' operation order: translator in contiguous layout, explicit
    softmax attention, HorNet's hand-written LayerNorm. Returns the ``scaled_dot_product_attention`` to use."""
    from vpbench_baselines.translators import HorNetBlock

    ours.hid.to(memory_format=torch.contiguous_format)

    def forward(frames):  # SimVP.forward without the channels-last translator
        b, t, ch, h, w = frames.shape
        x = frames.reshape(b * t, ch, h, w)
        first = x = ours.enc[0](x)
        for layer in ours.enc[1:]:
            x = layer(x)
        _, cz, hz, wz = x.shape
        z = ours.hid(x.reshape(b, t * cz, hz, wz)).reshape(b * t, cz, hz, wz)
        for layer in ours.dec[:-1]:
            z = layer(z)
        return ours.readout(ours.dec[-1](z + first)).reshape(b, t, ch, h, w)

    ours.forward = forward
    for module in ours.modules():
        if isinstance(module, HorNetBlock):
            module.norm1.forward = channel_layer_norm(module.norm1)
    return explicit_attention(scale_first=translator == "swin")


def compare_simvp(translator, models, batch, gen, authors: bool = False):
    from vpbench.plugins import get_harness
    from vpbench.protocols import DataSpec

    model = {"gsta": "gsta", "tau": "tau"}.get(translator, "simvp")
    torch.manual_seed(0)
    theirs = models("simvp_model").SimVP_Model((10, 1, 64, 64), hid_S=64, hid_T=512, N_S=4, N_T=8,
                                               model_type=TRANSLATORS[translator], mlp_ratio=8.0, drop_path=0.0).eval()
    cls = get_harness().models.get(model)
    cfg = cls.Config(translator=translator)
    ours = cls(cfg, DataSpec(10, 10, 1, 64, 64)).eval()
    attention = authors_order(ours, translator) if authors else torch.nn.functional.scaled_dot_product_attention
    return compare_calls(cls, cfg, theirs, ours, attention, torch.rand(batch, 10, 1, 64, 64, generator=gen), gen)


def compare_calls(cls, cfg, theirs, ours, attention, clip, gen):
    """One call of each on ``clip``, at the authors' initial and at perturbed weights."""
    sdpa = torch.nn.functional.scaled_dot_product_attention
    rows = []
    for weights in ("init", "perturbed"):
        if weights == "perturbed":
            perturb(theirs, gen)
        transfer(cls, cfg, theirs, ours)
        torch.nn.functional.scaled_dot_product_attention = attention
        try:
            with torch.no_grad():
                out, ours_out = theirs(clip), ours(clip)
        finally:
            torch.nn.functional.scaled_dot_product_attention = sdpa
        rows.append({"weights": weights, "out": (out - ours_out).abs().max().item(), "scale": out.abs().max().item()})
    return rows


def compare_predformer(root: Path, batch, gen, authors: bool = False):
    from vpbench.plugins import get_harness
    from vpbench.protocols import DataSpec

    module = load_predformer(root)
    config = dict(height=64, width=64, num_channels=1, pre_seq=10, after_seq=10, patch_size=8, dim=256, heads=8,
                  dim_head=32, dropout=0.0, attn_dropout=0.0, drop_path=0.0, scale_dim=4, depth=1, Ndepth=6)
    torch.manual_seed(0)
    theirs = module.PredFormer_Model(config).eval()
    cls = get_harness().models.get("predformer")
    cfg = cls.Config()
    ours = cls(cfg, DataSpec(10, 10, 1, 64, 64)).eval()
    attention = explicit_attention(scale_first=False) if authors else torch.nn.functional.scaled_dot_product_attention
    return compare_calls(cls, cfg, theirs, ours, attention, torch.rand(batch, 10, 1, 64, 64, generator=gen), gen)


def describe(path: Path) -> str:
    try:
        rev = subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        rev = "no git metadata"
    return f"{path} ({rev})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--openstl", type=Path, required=True, help="a checkout of github.com/chengtan9907/OpenSTL")
    parser.add_argument("--predformer", type=Path, help="a checkout of github.com/yyyujintang/PredFormer")
    parser.add_argument("--models", default=",".join(ALL), help=f"comma-separated, of: {','.join(ALL)}")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--float64", action="store_true",
                        help="build and run both in float64 (a difference that stays there is not rounding)")
    parser.add_argument("--authors-order", action="store_true",
                        help="run vpbench's SimVP translators and PredFormer in the authors' operation order (contiguous "
                             "translator, explicit softmax attention, HorNet's hand-written LayerNorm)")
    args = parser.parse_args(argv)
    if args.batch <= 0:
        parser.error("--batch must be a positive integer")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.float64:
        torch.set_default_dtype(torch.float64)
    try:
        importlib.import_module("torchvision")
    except ImportError:
        sys.meta_path.insert(0, _StubFinder(("torchvision",)))
    import timm

    models = load_openstl(args.openstl)
    cell = "standard" if "torch.tanh(c_new)" in (args.openstl / "openstl/modules/convlstm_modules.py").read_text() \
        else "openstl2023"
    print(f"OpenSTL {describe(args.openstl)}; PredFormer {describe(args.predformer) if args.predformer else '-'}")
    order = "the authors' operation order" if args.authors_order else "vpbench's operation order"
    dtype = "float64" if args.float64 else "float32"
    print(f"torch {torch.__version__}, timm {timm.__version__}, batch {args.batch}, {dtype} CPU; ConvLSTM cell {cell}; {order}")
    print(f"{'model':<18} {'weights':<10} {'max |out diff|':>15} {'max |out|':>10} {'|loss diff|':>12} {'loss':>10}")
    gen = torch.Generator().manual_seed(0)
    for name in args.models.split(","):
        if name in RECURRENT:
            rows = compare_recurrent(name, models, cell, args.batch, gen)
        elif name == "phydnet":
            rows = compare_phydnet(models, args.batch, gen)
        elif name.startswith("simvp:"):
            rows = compare_simvp(name.split(":", 1)[1], models, args.batch, gen, args.authors_order)
        elif name == "predformer":
            if not args.predformer:
                print(f"{name:<18} skipped: no --predformer")
                continue
            rows = compare_predformer(args.predformer, args.batch, gen, args.authors_order)
        else:
            parser.error(f"unknown model {name!r}; known: {','.join(ALL)}")
        for row in rows:
            loss = f"{row['loss']:>12.2e} {row['loss_value']:>10.4f}" if "loss" in row else f"{'-':>12} {'-':>10}"
            print(f"{name:<18} {row['weights']:<10} {row['out']:>15.2e} {row['scale']:>10.3f} {loss}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
