"""VQ and the hierarchical residual tree of codebooks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vpbench.layers.hrvq import HRVQ
from vpbench.layers.vq import VectorQuantizer


def hand_set(q: HRVQ, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for level, size in enumerate(q.sizes):
        q.codebooks[level].table.data.copy_(torch.randn(size, q.dim, generator=g) * (0.5**level))
    q.initialised.fill_(True)


def brute_force(q: HRVQ, x: torch.Tensor):
    """Greedy per level, each position searching the M children of its parent by hand."""
    paths, sums = [], []
    for row in x:
        r, parent, locals_, total = row.clone(), 0, [], torch.zeros_like(row)
        for level in range(q.levels):
            best, best_k = None, None
            for k in range(q.M):
                g = parent * q.M + k if level > 0 else k
                d = float(((r - q.codebooks[level].table[g]) ** 2).sum())
                if best is None or d < best:
                    best, best_k = d, k
            g = parent * q.M + best_k if level > 0 else best_k
            total, r, parent = total + q.codebooks[level].table[g], r - q.codebooks[level].table[g], g
            locals_.append(best_k)
        paths.append(locals_)
        sums.append(total)
    return torch.tensor(paths), torch.stack(sums)


def test_tree_indexing_matches_brute_force_and_decodes_back():
    q = HRVQ(levels=3, codebook_size=4, dim=5).eval()
    hand_set(q)
    z = torch.randn(2, 5, 3, 4, generator=torch.Generator().manual_seed(1))
    out = q(z)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 5)
    paths, sums = brute_force(q, flat)
    assert torch.equal(out.codes.permute(0, 2, 3, 1).reshape(-1, 3), paths)
    decoded = q.decode_codes(out.codes)
    assert torch.allclose(decoded.permute(0, 2, 3, 1).reshape(-1, 5), sums, atol=1e-6)
    assert torch.allclose(out.quantized, decoded, atol=1e-6)  # forward value = sum of the path's codewords
    glob = q.global_codes(paths)
    assert torch.equal(glob[:, 1], paths[:, 0] * 4 + paths[:, 1])
    assert torch.equal(glob[:, 2], (paths[:, 0] * 4 + paths[:, 1]) * 4 + paths[:, 2])
    assert [t.shape[0] for t in (q.codebooks[0].table, q.codebooks[1].table, q.codebooks[2].table)] == [4, 16, 64]


def test_residual_and_flat_modes():
    r = HRVQ(levels=3, codebook_size=4, dim=5, mode="residual").eval()
    hand_set(r)
    assert r.sizes == [4, 4, 4]
    z = torch.randn(1, 5, 2, 2)
    out = r(z)
    e = sum(r.codebooks[i].table[out.codes[:, i]] for i in range(3)).permute(0, 3, 1, 2)
    assert torch.allclose(out.quantized, e, atol=1e-6)
    f = HRVQ(levels=3, codebook_size=4, dim=5, mode="flat")
    assert f.levels == 1 and f.sizes == [64] and f.classes == 64


def toy_data(n=512, dim=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(8, dim, generator=g) * 2
    return centers[torch.randint(0, 8, (n,), generator=g)] + 0.3 * torch.randn(n, dim, generator=g)


def test_residual_norm_shrinks_level_by_level_after_training():
    q = HRVQ(levels=3, codebook_size=4, dim=6, restart_every=10, dead_after=20)
    data = toy_data()
    q.train()
    for _ in range(150):
        batch = data[torch.randint(0, len(data), (128,))]
        q(batch[:, :, None, None])
    q.eval()
    norms = [float(n) for n in q.quantize_residuals(data[:, :, None, None])]
    assert all(a > b for a, b in zip(norms, norms[1:])), norms
    assert norms[-1] < 0.5 * norms[0]


def test_gradients_commitment_to_encoder_only_codebook_loss_to_codebook_only():
    torch.manual_seed(0)
    enc = nn.Linear(4, 6)
    x = torch.randn(32, 4)

    def run(update, beta):
        enc.zero_grad()
        q = HRVQ(levels=2, codebook_size=4, dim=6, update=update, beta=beta)
        hand_set(q)
        q.train()
        z = enc(x)[:, :, None, None]
        out = q(z)
        out.loss.backward()
        return q

    q = run("loss", beta=0.0)  # codebook term only
    assert enc.weight.grad is None or enc.weight.grad.abs().max() == 0
    assert q.codebooks[0].table.grad.abs().sum() > 0 and q.codebooks[1].table.grad.abs().sum() > 0
    codebook_grads = [q.codebooks[i].table.grad.clone() for i in range(2)]
    q = run("loss", beta=0.25)  # adding commitment changes nothing for the codebook
    assert all(torch.allclose(q.codebooks[i].table.grad, codebook_grads[i]) for i in range(2))
    assert enc.weight.grad.abs().sum() > 0
    q = run("ema", beta=0.25)  # EMA: no codebook term; codebooks are buffers
    assert enc.weight.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in q.parameters())


def test_straight_through_passes_decoder_gradient_to_the_encoder():
    q = HRVQ(levels=2, codebook_size=4, dim=3).train()
    z = torch.randn(2, 3, 2, 2, requires_grad=True)
    out = q(z)
    out.quantized.sum().backward()
    assert torch.allclose(z.grad, torch.ones_like(z))


def test_ema_buffers_move_only_in_training_mode():
    q = HRVQ(levels=2, codebook_size=4, dim=6)
    hand_set(q)
    before = [q.codebooks[i].table.clone() for i in range(2)]
    q.eval()
    q(toy_data(64)[:, :, None, None])
    assert all(torch.equal(q.codebooks[i].table, before[i]) for i in range(2))
    q.train()
    q(toy_data(64)[:, :, None, None])
    assert not torch.equal(q.codebooks[0].table, before[0])


def test_dead_children_of_used_parents_restart_from_residuals():
    q = HRVQ(levels=2, codebook_size=8, dim=6, child_init=1e-6, dead_after=5, restart_every=5)
    data = toy_data(256)
    q.train()
    for _ in range(30):
        q(data[:, :, None, None])
    norms = q.codebooks[1].table.norm(dim=1)
    parents_used = q.codebooks[0].seen.nonzero().flatten()
    children = torch.cat([torch.arange(p * 8, p * 8 + 8) for p in parents_used])
    # without restarts almost every child of a used parent would keep its 1e-6 norm
    assert (norms[children] > 1e-3).float().mean() > 0.5
    assert q.codebooks[1].seen.any() and q.codebooks[1].seen.sum() <= len(children)


def test_single_codebook_vq_round_trip_and_ema():
    vq = VectorQuantizer(8, 4)
    z = torch.randn(2, 4, 3, 3)
    vq.eval()
    out = vq(z)
    assert torch.allclose(vq.decode_codes(out.codes), out.quantized, atol=1e-6)
    d = ((z.permute(0, 2, 3, 1)[..., None, :] - vq.embed) ** 2).sum(-1)
    assert torch.equal(out.codes, d.argmin(-1))
    before = vq.embed.clone()
    vq.train()
    vq(z)
    assert not torch.equal(vq.embed, before)
    with pytest.raises(ValueError):
        VectorQuantizer(8, 4, update="adam")


@pytest.mark.parametrize("mode", ["tree", "flat"])
def test_quantisers_ignore_autocast_codes_match_float32(mode):
    """Under bf16 autocast (train.amp=on) the nearest-codeword search still runs in float32, so
    the codes a model trains on are the codes it is evaluated on."""
    torch.manual_seed(0)
    q = HRVQ(levels=2, codebook_size=16, dim=32, mode=mode)
    hand_set(q)
    single = VectorQuantizer(16, 32)
    q.eval(), single.eval()
    z = torch.randn(64, 32, 8, 8, generator=torch.Generator().manual_seed(1))
    ref, ref_single = q(z), single(z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, out_single = q(z), single(z)
    assert torch.equal(out.codes, ref.codes) and torch.equal(out_single.codes, ref_single.codes)
    assert out.quantized.dtype == torch.float32 and out_single.quantized.dtype == torch.float32


@pytest.mark.parametrize("update,mode", [("ema", "tree"), ("loss", "tree"), ("ema", "flat")])
def test_state_dicts_of_the_version_1_layout_load_and_give_the_same_codes(update, mode):
    """Version 1 kept a level's tensors as ``table{i}``, ``cluster{i}``, ``embed_sum{i}`` (EMA),
    ``last_used{i}`` and ``seen{i}``: such a state dict, inside a model or alone, loads into
    ``codebooks.{i}`` and the quantiser gives the same codes and latents."""
    q = HRVQ(levels=2, codebook_size=4, dim=6, mode=mode, update=update, restart_every=3, dead_after=2)
    q.train()
    for _ in range(4):
        q(toy_data(64)[:, :, None, None])
    q.eval()
    fields = ["table", "cluster", "embed_sum", "last_used", "seen"] if update == "ema" else ["table", "last_used", "seen"]
    old = {f"{name}{level}": getattr(q.codebooks[level], name) for level in range(q.levels) for name in fields}
    old.update(step=q.step, initialised=q.initialised)
    assert len(old) == len(q.state_dict())
    fresh = HRVQ(levels=2, codebook_size=4, dim=6, mode=mode, update=update)
    fresh.load_state_dict(old)
    outer = nn.Sequential(HRVQ(levels=2, codebook_size=4, dim=6, mode=mode, update=update))
    outer.load_state_dict({f"0.{key}": value for key, value in old.items()})
    z = toy_data(32)[:, :, None, None]
    for loaded in (fresh.eval(), outer[0].eval()):
        assert all(torch.equal(value, loaded.state_dict()[key]) for key, value in q.state_dict().items())
        assert torch.equal(loaded(z).codes, q(z).codes) and torch.equal(loaded(z).quantized, q(z).quantized)
