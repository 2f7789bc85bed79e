"""Models of spec sections 7-8: shapes, parameter counts, embedding, masks, config errors."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from pxby_lib.models import (
    MambaBlock,
    ModelConfig,
    PxByEmbed,
    build_model,
    count_parameters,
)
from pxby_lib.models.__main__ import main as models_main
from pxby_lib.models.transformer import transformer_width


def windows(b: int = 2, length: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 113, (b, length, 3, 3), generator=torch.Generator().manual_seed(seed))


def tiny(**kw) -> ModelConfig:
    return ModelConfig(**{"d_model": 18, "d_state": 8, **kw})


# ---- shapes and parameter counts -------------------------------------------------------

VARIANTS = (
    [tiny(family="rnn", bidirectional=bi, embedding=emb, conv=conv, depth=depth)
     for bi, (emb, conv), depth in itertools.product(
         (True, False), (("pxby", True), ("pxby", False), ("center", False)), (1, 2, 3))]
    + [tiny(family=f, embedding=emb, conv=conv, depth=depth)
       for f in ("transformer", "transformer_causal")
       for (emb, conv), depth in itertools.product((("pxby", True), ("center", False)), (1, 2))]
    + [tiny(family="ssm", bidirectional=bi, embedding=emb, conv=conv, depth=depth)
       for bi, (emb, conv), depth in itertools.product(
           (True, False), (("pxby", True), ("pxby", False), ("center", False)), (1, 2, 3))]
)


@pytest.mark.parametrize("cfg", VARIANTS, ids=lambda c: "-".join(map(str, c.to_dict().values())))
def test_every_variant_maps_windows_to_last_position_logits(cfg):
    torch.manual_seed(0)
    model = build_model(cfg)
    assert model.config == cfg
    logits = model(windows(3, 7))
    assert logits.shape == (3, 113) and torch.isfinite(logits).all()
    logits.sum().backward()  # every parameter is reached by the gradient
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("settings, expected", [
    (dict(family="rnn", bidirectional=True, d_model=81, d_state=64, depth=2), 78_633),
    (dict(family="transformer", d_model=81, depth=1), 95_477),
    (dict(family="ssm", bidirectional=True, d_model=81, d_state=64, depth=1), 91_431),
])
def test_parameter_counts_of_the_spec(settings, expected):
    assert count_parameters(build_model(settings)) == expected


def test_rnn_layers_follow_the_spec():
    model = build_model(dict(family="rnn", d_model=81, d_state=64, depth=3))
    assert model.first.bidirectional and model.first.hidden_size == 32
    assert model.rest.num_layers == 2 and model.rest.input_size == 64
    assert not model.rest.bidirectional and model.first.dropout == model.rest.dropout == 0
    uni = build_model(dict(family="rnn", bidirectional=False, d_model=81, d_state=64, depth=1))
    assert uni.first.hidden_size == 64 and uni.rest is None


# ---- embedding ------------------------------------------------------------------------

def test_pxby_embed_dimensions_gate_init_and_no_padding_idx():
    torch.manual_seed(0)
    for d, e in ((36, 9), (81, 9), (162, 18)):
        assert PxByEmbed(d).dim == e  # E = max(9, D // 9)
    gates = torch.stack([PxByEmbed(81).alpha for _ in range(20)])
    assert gates.shape == (20, 1, 1, 3, 3)
    assert gates.min() >= 0 and gates.max() < 1 and gates.std() > 0.1  # uniform [0, 1)
    embed = PxByEmbed(81)
    assert embed.embedding.padding_idx is None
    x = torch.zeros(1, 2, 3, 3, dtype=torch.long)  # all padding ids
    # not .sum(): the sum of a LayerNorm's output has a zero gradient (up to rounding)
    (embed(x) * torch.randn(1, 2, 81)).sum().backward()
    assert embed.embedding.weight.grad[0].abs().sum() > 0  # id 0 is trained like any other


def test_pxby_embed_flattens_in_channel_row_col_order():
    torch.manual_seed(0)
    embed = PxByEmbed(81, conv=False)
    seen = {}
    embed.projection.register_forward_hook(lambda m, inp, out: seen.update(x=inp[0]))
    x = windows(2, 4)
    embed(x)
    flat = seen["x"]  # (B, L, 9E), index e * 9 + row * 3 + col
    gate = torch.sigmoid(embed.alpha)[0, 0]
    for e, row, col in ((0, 0, 0), (3, 1, 1), (8, 2, 1), (5, 0, 2)):
        expected = gate[row, col] * embed.embedding.weight[x[:, :, row, col], e]
        torch.testing.assert_close(flat[:, :, e * 9 + row * 3 + col], expected)


def test_conv_gate_mixes_with_the_convolution():
    torch.manual_seed(0)
    with_conv = PxByEmbed(18, conv=True)
    without = PxByEmbed(18, conv=False)
    without.load_state_dict({k: v for k, v in with_conv.state_dict().items()
                             if not k.startswith("conv.")})
    x = windows()
    assert not torch.allclose(with_conv(x), without(x))
    with torch.no_grad():  # sigmoid(alpha) -> 1: the convolution's share vanishes
        with_conv.alpha.fill_(50.0)
        without.alpha.fill_(50.0)
    torch.testing.assert_close(with_conv(x), without(x))


def test_center_embedding_reads_only_the_centre():
    torch.manual_seed(0)
    model = build_model(tiny(family="rnn", embedding="center", conv=False)).eval()
    x = windows()
    changed = x.clone()
    changed[:, :, 0, :] = (changed[:, :, 0, :] + 1) % 113  # every cell but the centre
    changed[:, :, 1, 0] = (changed[:, :, 1, 0] + 5) % 113
    torch.testing.assert_close(model(x), model(changed))
    changed[:, -1, 1, 1] = (changed[:, -1, 1, 1] + 1) % 113
    assert not torch.allclose(model(x), model(changed))


# ---- transformer: no order in the paper's, causal in the improved one -----------------

def test_paper_transformer_ignores_the_order_of_earlier_positions():
    torch.manual_seed(0)
    model = build_model(dict(family="transformer", d_model=81, depth=2)).eval()
    assert transformer_width(81) == 80 and model.head.in_features == 80
    x = windows(2, 9)
    permuted = torch.cat([x[:, :-1].flip(1), x[:, -1:]], dim=1)  # last position kept
    torch.testing.assert_close(model(x), model(permuted), atol=1e-5, rtol=1e-5)
    changed = x.clone()
    changed[:, 0, 1, 1] = (changed[:, 0, 1, 1] + 1) % 113  # contents still matter
    assert not torch.allclose(model(x), model(changed), atol=1e-4)


def test_causal_transformer_is_causal_and_order_aware():
    torch.manual_seed(0)
    model = build_model(dict(family="transformer_causal", d_model=81, depth=2)).eval()
    x = windows(2, 9)
    later = x.clone()
    later[:, 6:] = (later[:, 6:] + 1) % 113
    torch.testing.assert_close(model.encode(x)[:, :6], model.encode(later)[:, :6])
    assert not torch.allclose(model.encode(x)[:, 6:], model.encode(later)[:, 6:])
    permuted = torch.cat([x[:, :-1].flip(1), x[:, -1:]], dim=1)
    assert not torch.allclose(model(x), model(permuted), atol=1e-4)
    with pytest.raises(ValueError, match="context"):
        model.forward_all(windows(1, 513))


def test_causal_transformer_reads_the_last_context_windows():
    """Past its training length the model reads a sliding context (nanoGPT's crop): the
    last `context` windows, at the positions it was trained on."""
    torch.manual_seed(0)
    model = build_model(dict(family="transformer_causal", d_model=20, depth=1), context=8).eval()
    assert model.position.num_embeddings == 8
    x = windows(2, 13)
    torch.testing.assert_close(model(x), model(x[:, -8:]))
    torch.testing.assert_close(model(x[:, -8:]), model.forward_all(x[:, -8:])[:, -1])


# ---- SSM --------------------------------------------------------------------------------

def test_bidirectional_ssm_shares_one_block_for_both_directions():
    torch.manual_seed(0)
    cfg = dict(family="ssm", d_model=18, d_state=8, depth=1)
    bi, uni = build_model(cfg), build_model({**cfg, "bidirectional": False})
    # the only extra parameters of Bi are its LayerNorm: one block reads both directions
    assert count_parameters(bi) - count_parameters(uni) == 2 * 18
    assert len(bi.layers) == 1
    x = windows(2, 7)
    h = bi.embed(x)
    block = bi.layers[0]
    expected = bi.head(bi.norm(block(h) + block(h.flip(1)).flip(1))[:, -1])
    torch.testing.assert_close(bi(x), expected)


def test_mamba_block_init_and_causality():
    torch.manual_seed(0)
    block = MambaBlock(81, d_state=64)
    assert block.d_inner == 162 and block.dt_rank == 6
    torch.testing.assert_close(block.A_log.exp()[5], torch.arange(1, 65, dtype=torch.float32))
    assert torch.equal(block.D, torch.ones(162))
    dt = torch.nn.functional.softplus(block.dt_proj.bias)
    assert dt.min() >= 1e-3 - 1e-7 and dt.max() <= 0.1 + 1e-7
    assert block.in_proj.bias is None and block.x_proj.bias is None and block.out_proj.bias is None
    x = torch.randn(2, 10, 81)
    later = x.clone()
    later[:, 6:] += 1.0
    torch.testing.assert_close(block(x)[:, :6], block(later)[:, :6])  # causal conv and scan
    assert not torch.allclose(block(x)[:, 6:], block(later)[:, 6:])


@pytest.mark.parametrize("backend", ["reference", "eager", "native",
                                     pytest.param("compiled", marks=pytest.mark.slow)])
def test_mamba_block_sequential_path_equals_the_parallel_path(backend):
    # step() from the zero state, position by position == forward(); and step() continues
    # from the state mix(..., return_state=True) returns after any prefix
    torch.manual_seed(0)
    block = MambaBlock(12, d_state=5).double()
    block.scan_backend = backend
    with torch.no_grad():
        block.A_log.add_(0.3 * torch.randn_like(block.A_log))  # trained-like A, not 1..N
        block.D.add_(torch.randn_like(block.D))
    x = torch.randn(3, 9, 12, dtype=torch.float64)  # (B, L, D)
    with torch.no_grad():
        full = block(x)  # (B, L, D)
        state, steps = (None, None), []
        for t in range(x.shape[1]):
            y_t, *state = block.step(x[:, t], *state)
            steps.append(y_t)
        torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-12, rtol=1e-12)
        for prefix in (1, 2, 3, 4, 8):  # shorter and longer than the conv window (K - 1 = 3)
            y, window, h = block.mix(block.in_proj(x[:, :prefix]), return_state=True)
            torch.testing.assert_close(y, full[:, :prefix], atol=1e-12, rtol=1e-12)
            y_next, _, _ = block.step(x[:, prefix], window, h)
            torch.testing.assert_close(y_next, full[:, prefix], atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_ssm_fast_scan_matches_reference_scan_in_the_model(bidirectional):
    # bidirectional: one block with shared weights reads both directions (a batch of 2B)
    torch.manual_seed(0)
    model = build_model(dict(family="ssm", d_model=18, d_state=8, depth=2,
                             bidirectional=bidirectional))
    x, target = windows(3, 11), torch.tensor([1, 2, 3])
    results = []
    for backend in ("reference", "eager", "native"):
        model.set_scan_backend(backend)
        model.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), target)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    for loss, grads in results[1:]:
        torch.testing.assert_close(loss, results[0][0])
        for a, b in zip(results[0][1], grads):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


# ---- config -----------------------------------------------------------------------------

def test_config_round_trip_and_build_from_dict():
    cfg = ModelConfig.from_dict({"family": "ssm", "bidirectional": False, "depth": 1})
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert build_model(cfg.to_dict()).config == cfg


@pytest.mark.parametrize("settings, words", [
    ({"family": "rnn", "hidden": 64}, ["unknown key", "hidden", "d_state"]),
    ({"family": "lstm"}, ["family", "'lstm'", "'rnn'"]),
    ({"family": "rnn", "depth": 0}, ["depth", "0", ">= 1"]),
    ({"family": "rnn", "d_model": "81"}, ["d_model", "'81'", "integer"]),
    ({"family": "rnn", "d_model": 81.0}, ["d_model", "81.0", "integer"]),
    ({"family": "rnn", "depth": True}, ["depth", "True", "integer"]),
    ({"family": "rnn", "bidirectional": "true"}, ["bidirectional", "'true'", "boolean"]),
    ({"family": "rnn", "embedding": "onehot"}, ["embedding", "'onehot'", "'pxby'"]),
    ({"family": "rnn", "embedding": "center"}, ["conv", "center"]),
    ({"family": "rnn", "d_state": 63}, ["d_state", "63", "even"]),
    ({"family": "transformer", "d_model": 3}, ["d_model", "3", ">= 4"]),
    ({"depth": 2}, ["missing", "family"]),
])
def test_config_errors_name_the_key_the_value_and_the_allowed(settings, words):
    with pytest.raises(ValueError) as err:
        ModelConfig.from_dict(settings)
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_model_input_is_checked():
    model = build_model(tiny(family="rnn"))
    with pytest.raises(ValueError, match=r"\(B, L, 3, 3\)"):
        model(torch.zeros(2, 5, 9, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 113\)"):
        model(torch.full((1, 2, 3, 3), 113))


def test_cli_prints_the_rows_of_params_yaml(tmp_path, capsys):
    """The repository's params.yaml (rows with their own seeds) and a broken copy."""
    params = Path(__file__).resolve().parents[1] / "params.yaml"
    assert models_main(["--params", str(params)]) == 0
    out = capsys.readouterr().out
    ref = next(line for line in out.splitlines() if "| rnn_bi_pxby_conv_d81_s64_l2 " in line)
    att = next(line for line in out.splitlines() if "| att_pxby_conv_d81_l1 " in line)
    assert "78633" in ref and "0 1 2" in ref and "95477" in att
    broken = tmp_path / "params.yaml"
    broken.write_text(params.read_text().replace("depth: 2}", "depth: 0}", 1))
    assert models_main(["--params", str(broken)]) == 2
    assert "depth" in capsys.readouterr().err
    assert models_main(["--params", str(tmp_path / "missing.yaml")]) == 2
