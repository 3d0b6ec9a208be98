"""Masked 3-D convolutions, causal attention, the ST-PixelCNN and the VPN prior: causality by
gradients, cached generation equal to naive generation."""

from __future__ import annotations

import itertools

import pytest
import torch

from vpbench.layers.attention import CausalSTAttention
from vpbench.layers.hrvq import HRVQ
from vpbench.layers.masked_conv import CausalConv3d, GatedBlock, causal_mask
from vpbench_shrvqvae.prior import STPixelCNN
from vpbench_shrvqvae.vpn import VPNPrior
from vpbench_shrvqvae.vpn_decoding import causal_cells, kernels, wavefronts

T, H, W, N = 3, 3, 4, 2  # frames, rows, columns, levels


def order(t, h, w, level):
    return (t, h, w, level)


def allowed_inputs(t, h, w, level):
    """Every (t', h', w', level') the logits of (t, h, w, level) may depend on."""
    return {(a, b, c, d) for a, b, c, d in itertools.product(range(T), range(H), range(W), range(N))
            if (a, b, c) < (t, h, w) or ((a, b, c) == (t, h, w) and d < level)}


def make_prior(attn_every=1, seed=0):
    torch.manual_seed(seed)
    q = HRVQ(levels=N, codebook_size=3, dim=4)
    prior = STPixelCNN(N, q.sizes, q.classes, (H, W), embed=3, hidden=4, blocks=2, kernel_time=2,
                       first_kernel_space=3, attn_every=attn_every).double()
    for p in prior.parameters():  # random, non-trivial weights everywhere
        torch.nn.init.normal_(p, std=0.3)
    return q, prior


@pytest.mark.parametrize("attn_every", [0, 1])
def test_prior_is_causal_by_gradients(attn_every):
    _, prior = make_prior(attn_every)
    e = prior.embed_dim
    seen_total = allowed_total = 0
    for t, h, w, level in [(0, 0, 0, 0), (1, 1, 2, 1), (2, 2, 3, 0), (2, 0, 1, 1), (1, 2, 0, 0)]:
        x = torch.randn(1, N * e, T, H, W, dtype=torch.float64, requires_grad=True)
        logits = prior.forward_embedded(x)  # (B, T, n, classes, H, W)
        logits[0, t, level, :, h, w].sum().backward()
        grad = x.grad[0].reshape(N, e, T, H, W).abs().sum(1)  # (level', T, H, W)
        ok = allowed_inputs(t, h, w, level)
        for lv, a, b, c in itertools.product(range(N), range(T), range(H), range(W)):
            if (a, b, c, lv) not in ok:
                assert grad[lv, a, b, c] == 0, f"logit {(t, h, w, level)} sees {(a, b, c, lv)}"
        seen_total += sum(1 for (a, b, c, lv) in ok if grad[lv, a, b, c] != 0)
        allowed_total += len(ok)
    # the allowed past really is used (not a vacuous pass): most of it reaches the logits
    # (not all: PixelCNN's blind spot, a finite receptive field, ReLUs dead on random weights)
    assert seen_total > 0.6 * allowed_total


def test_mask_a_excludes_the_centre_group_and_b_includes_it():
    a = causal_mask(4, 4, (2, 3, 3), 2, "A")[:, :, 1, 1, 1]
    b = causal_mask(4, 4, (2, 3, 3), 2, "B")[:, :, 1, 1, 1]
    assert a.tolist() == [[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0]]
    assert b.tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]]
    full = causal_mask(2, 2, (2, 3, 3), 1, "B")
    assert full[0, 0, 0].sum() == 9 and full[0, 0, 1].tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]


def test_incremental_conv_and_attention_equal_the_full_forward():
    torch.manual_seed(1)
    x = torch.randn(2, 4, T, H, W, dtype=torch.float64)
    conv = CausalConv3d(4, 6, (2, 3, 3), 2, "B").double()
    block = GatedBlock(4, (3, 3, 3), 2).double()
    attn = CausalSTAttention(4, 2).double()
    full_conv, full_block, full_attn = conv(x), block(x), attn(x)
    t = T - 1
    weights = conv.incremental_weights()
    past = conv.past([x[:, :, s] for s in range(t)])
    wa, wb = block.conv_a.incremental_weights(), block.conv_b.incremental_weights()
    pa, pb = block.conv_a.past([x[:, :, s] for s in range(t)]), block.conv_b.past([x[:, :, s] for s in range(t)])
    cache = torch.nn.functional.pad(x[:, :, t], (1, 1, 1, 1))
    hist = [attn.keys_values(x[:, :, s]) for s in range(t)]
    hk, hv = torch.stack([k for k, _ in hist], 1), torch.stack([v for _, v in hist], 1)
    ck, cv = attn.keys_values(x[:, :, t])
    for h, w in itertools.product(range(H), range(W)):
        v = x[:, :, t, h, w]
        assert torch.allclose(conv.at(cache, v, h, w, past[:, :, h, w], weights), full_conv[:, :, t, h, w])
        out = block.at(cache, v, h, w, pa[:, :, h, w], pb[:, :, h, w], wa, wb)
        assert torch.allclose(out, full_block[:, :, t, h, w])
        assert torch.allclose(attn.at(v, h * W + w, hk, hv, ck, cv), full_attn[:, :, t, h, w])


@pytest.mark.parametrize("make", [lambda: CausalConv3d(4, 6, (2, 3, 3), 2, "A"), lambda: GatedBlock(4, (3, 3, 3), 2),
                                  lambda: CausalSTAttention(4, 2)])
def test_layer_caches_step_through_frames_like_the_full_forward(make):
    """``layer.cache`` after the first frame, then every later frame position by position (each
    input stored once final): the outputs of the full forward, frame after frame."""
    torch.manual_seed(2)
    layer = make().double()
    x = torch.randn(2, 4, T + 1, H, W, dtype=torch.float64)
    full = layer(x)
    cache = layer.cache(x[:, :, :1])
    for t in range(1, T + 1):
        cache.begin_frame()
        for h, w in itertools.product(range(H), range(W)):
            assert torch.allclose(cache.step(x[:, :, t, h, w], h, w), full[:, :, t, h, w])
            assert torch.allclose(cache.step(x[:, :, t, h, w], h, w, store=True), full[:, :, t, h, w])
        cache.end_frame()


def choosers(temperature, seed=0):
    g = torch.Generator().manual_seed(seed)

    def choose(logits, level, parent, noise=None):
        if temperature == 0:
            return logits.argmax(-1)
        if noise is not None:
            return (logits / temperature + noise).argmax(-1)
        return torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=g)[:, 0]

    return choose


@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("attn_every", [0, 1])
def test_cached_generation_equals_naive(temperature, attn_every):
    q, prior = make_prior(attn_every, seed=3)
    context_local = torch.randint(0, 3, (2, 2, H, W, N), generator=torch.Generator().manual_seed(4))
    context = q.global_codes(context_local).permute(0, 1, 4, 2, 3)
    cached = prior.generate(context, 2, choosers(temperature), q.global_codes)
    naive = prior.generate_naive(context, 2, choosers(temperature), q.global_codes)
    assert cached.shape == (2, 2, N, H, W)
    assert torch.equal(cached, naive)
    assert cached.unique().numel() > 1  # not a degenerate constant


def make_vpn(seed=0, dim=4):
    torch.manual_seed(seed)
    q = HRVQ(levels=N, codebook_size=3, dim=dim).double()
    for level in range(N):
        q.codebooks[level].table.normal_()
    prior = VPNPrior(levels=N, classes=q.classes, dim=dim, latent_hw=(H, W), embed=3, hidden=4, blocks=2,
                     first_kernel_space=3, stream_hidden=5, stream_layers=2, table_sizes=q.sizes).double()
    for p in prior.parameters():
        torch.nn.init.normal_(p, std=0.4)
    return q, prior


def test_vpn_prior_is_causal_by_gradients():
    """Frame t's logits see every position of frames < t (through the stream) and, in frame t,
    only earlier positions and earlier levels of the same position (through the masks)."""
    q, prior = make_vpn()
    seen_total = allowed_total = 0
    for t, h, w, level in [(0, 0, 0, 0), (1, 1, 2, 1), (2, 2, 3, 0), (2, 0, 1, 1), (1, 2, 0, 0), (0, 2, 3, 1)]:
        x = torch.randn(1, T, H, W, N, 4, dtype=torch.float64, requires_grad=True)
        glob = q.global_codes(torch.randint(0, 3, (1, T, H, W, N)))
        logits = prior(glob, x)  # (B, T, n, classes, H, W)
        logits[0, t, level, :, h, w].sum().backward()
        grad = x.grad[0].abs().sum(-1)  # (T, H, W, level')
        ok = allowed_inputs(t, h, w, level)
        for a, b, c, lv in itertools.product(range(T), range(H), range(W), range(N)):
            if (a, b, c, lv) not in ok:
                assert grad[a, b, c, lv] == 0, f"logit {(t, h, w, level)} sees {(a, b, c, lv)}"
        seen_total += sum(1 for (a, b, c, lv) in ok if grad[a, b, c, lv] != 0)
        allowed_total += len(ok)
        if t > 0:  # the stream reads the whole previous frame, every position and level
            assert (grad[t - 1] != 0).all()
        # the index embeddings take the same masked path: new codes wherever the logit may not
        # look leave it unchanged, new codes everywhere change it
        hidden = torch.tensor([[[[(a, b, c, d) not in ok for d in range(N)] for c in range(W)] for b in range(H)]
                               for a in range(T)])[None]
        other = q.global_codes(torch.randint(0, 3, (1, T, H, W, N)))
        with torch.no_grad():
            base = prior(glob, x)[0, t, level, :, h, w]
            assert torch.equal(prior(torch.where(hidden, other, glob), x)[0, t, level, :, h, w], base)
            changed = prior(other, x)[0, t, level, :, h, w]
        assert not torch.equal(changed, base) or not ok
    assert seen_total > 0.6 * allowed_total


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_vpn_cached_generation_equals_naive(temperature):
    """Sequential cached decoding, wavefront decoding and the naive loop give the same codes, for
    argmax and for seeded sampling (Gumbel noise drawn per frame)."""
    q, prior = make_vpn(seed=3)
    context_local = torch.randint(0, 3, (2, 2, H, W, N), generator=torch.Generator().manual_seed(4))
    context = q.global_codes(context_local).permute(0, 1, 4, 2, 3)
    args = (q.global_codes, q.cumulative_codewords)
    out = {}
    for name, run in [("cached", lambda: prior.generate(context, 3, choosers(temperature), *args, wavefront=False)),
                      ("wavefront", lambda: prior.generate(context, 3, choosers(temperature), *args)),
                      ("naive", lambda: prior.generate_naive(context, 3, choosers(temperature), *args))]:
        torch.manual_seed(7)
        out[name] = run()
    assert out["cached"].shape == (2, 3, N, H, W)
    for name in ("cached", "wavefront"):
        assert torch.equal(out[name], out["naive"]), name
    assert out["cached"].unique().numel() > 1
    if temperature:  # the noise is what decides: another seed gives other codes
        torch.manual_seed(8)
        assert not torch.equal(prior.generate(context, 3, choosers(temperature), *args), out["naive"])


@pytest.mark.parametrize("levels,kernel,tables,blocks",
                         [(1, 3, True, 2), (3, 3, True, 2), (2, 5, True, 2), (2, 3, False, 2), (2, 5, True, 0)])
def test_vpn_wavefront_decoding_equals_the_naive_loop_for_any_depth_and_first_kernel(levels, kernel, tables, blocks):
    """Wavefronts follow the widest kernel (5: three columns per row); one, two and three levels
    (each through its own channel groups); inputs through the precomputed embedding table or,
    without index embeddings, the plain embedding; no gated blocks (the first layer alone)."""
    torch.manual_seed(11)
    q = HRVQ(levels=levels, codebook_size=3, dim=4).double()
    for level in range(levels):
        q.codebooks[level].table.normal_()
    prior = VPNPrior(levels=levels, classes=q.classes, dim=4, latent_hw=(4, 7), embed=3, hidden=4, blocks=blocks,
                     first_kernel_space=kernel, stream_hidden=5, stream_layers=1,
                     table_sizes=q.sizes if tables else None).double()
    with torch.no_grad():
        for param in prior.parameters():
            param.normal_(0, 0.5)
    fronts = wavefronts(kernels(prior), 4, 7)
    assert sorted(p for f in fronts for p in f) == [(y, x) for y in range(4) for x in range(7)]
    assert len(fronts) == 7 + (kernel // 2 + 1) * 3
    context = q.global_codes(torch.randint(0, 3, (2, 2, 4, 7, levels))).permute(0, 1, 4, 2, 3)
    args = (q.global_codes, q.cumulative_codewords)
    for temperature in (0.0, 1.0):
        torch.manual_seed(3)
        wave = prior.generate(context, 2, choosers(temperature), *args)
        torch.manual_seed(3)
        naive = prior.generate_naive(context, 2, choosers(temperature), *args)
        assert torch.equal(wave, naive) and wave.unique().numel() > 1


def test_causal_cells_are_the_rows_above_and_the_columns_to_the_left():
    dy, dx = causal_cells(3, 3)
    assert list(zip(dy.tolist(), dx.tolist())) == [(0, 0), (0, 1), (0, 2), (1, 0)]
    dy, dx = causal_cells(5, 5)
    assert list(zip(dy.tolist(), dx.tolist())) == [(y, x) for y in range(2) for x in range(5)] + [(2, 0), (2, 1)]
    # the cells a current-frame mask keeps (centre aside) are exactly these
    mask = causal_mask(1, 1, (1, 5, 5), 1, "A")[0, 0, 0]
    mask[2, 2] = 0
    assert sorted(map(tuple, mask.nonzero().tolist())) == sorted(zip(dy.tolist(), dx.tolist()))


def test_no_layer_of_the_vpn_prior_reads_the_last_code_of_its_own_position():
    """What wavefront decoding relies on to write a front's block inputs from the last level's
    pass: a new last-level code at a position leaves every block's input there (and at every
    earlier position) unchanged, and changes the logits of later positions."""
    q, prior = make_vpn(seed=2)
    inputs: list[torch.Tensor] = []
    hooks = [block.register_forward_pre_hook(lambda _, args: inputs.append(args[0])) for block in prior.blocks]
    local = torch.randint(0, 3, (1, T, H, W, N))
    other = local.clone()
    t, y, x = 1, 1, 2
    other[0, t, y, x, N - 1] = (local[0, t, y, x, N - 1] + 1) % 3
    outs = []
    with torch.no_grad():
        for codes in (local, other):
            glob = q.global_codes(codes)
            outs.append(prior(glob, q.cumulative_codewords(glob)))
    for hook in hooks:
        hook.remove()
    assert len(inputs) == 2 * len(prior.blocks)
    for a, b in zip(inputs[: len(prior.blocks)], inputs[len(prior.blocks):]):  # (B*T, C, 1, H, W)
        a, b = a[t, :, 0].flatten(1), b[t, :, 0].flatten(1)
        assert torch.equal(a[:, : y * W + x + 1], b[:, : y * W + x + 1])
        assert not torch.equal(a, b)  # later positions do read it
    later = outs[0][0, t, :, :, y, x + 1]
    assert not torch.equal(later, outs[1][0, t, :, :, y, x + 1])


def test_cumulative_codewords_sum_the_path_level_by_level():
    q, _ = make_vpn()
    local = torch.tensor([[2, 1], [0, 2]])
    glob = q.global_codes(local)
    cw = q.cumulative_codewords(glob)  # (2, n, D)
    for i in range(2):
        first = q.codebooks[0].table[local[i, 0]]
        assert torch.equal(cw[i, 0], first)
        assert torch.allclose(cw[i, 1], first + q.codebooks[1].table[local[i, 0] * 3 + local[i, 1]])
    decoded = q.decode_codes(local.reshape(2, 1, 1, N).permute(0, 3, 1, 2))  # (2, D, 1, 1)
    assert torch.allclose(cw[:, -1], decoded[:, :, 0, 0])
