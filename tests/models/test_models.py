"""Behaviour of pepx.models: shapes, A/B/C scalars, PEPX conv kinds, the one-way PEPX stream, training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pepx.models import PEPX, count_params, create_model, list_models, residual_scalars
from pepx.models.covidnet import COVIDNet
from pepx.models.pepx_resnet import PEPXResNetBlock

MODELS = ["pepx_resnet", "resnet18", "covidnet"]
SMALL = 0.25


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_registry_lists_the_three_models():
    assert set(MODELS) <= set(list_models())
    with pytest.raises(ValueError, match="unknown model"):
        create_model("vgg19")


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("in_chans", [1, 3])
@pytest.mark.parametrize("size", [64, 128, 224])
def test_output_shape(name, in_chans, size):
    model = create_model(name, num_classes=3, in_chans=in_chans, width=SMALL).eval()
    with torch.no_grad():
        y = model(torch.randn(2, in_chans, size, size))
    assert y.shape == (2, 3)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", MODELS)
def test_default_width_forward_224(name):
    model = create_model(name, num_classes=5).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 224, 224)).shape == (1, 5)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("width", [0.125, 0.25, 0.5])
def test_small_widths_keep_at_least_8_channels(name, width):
    model = create_model(name, width=width)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            assert m.out_channels >= 8 and m.out_channels % 4 == 0, m


def test_pepx_channel_plan():
    m = PEPX(64, 128, stride=2)
    assert (m.proj_ch, m.expand_ch) == (32, 48)  # C_in/2 and 3/4 C_in: fewer, then more but != C_in
    convs = [c for c in m.modules() if isinstance(c, nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(1, 1), (1, 1), (3, 3), (1, 1), (1, 1)]
    io = [(c.in_channels, c.out_channels) for c in convs]
    assert io == [(64, 32), (32, 48), (48, 48), (48, 32), (32, 128)]
    assert convs[2].stride == (2, 2) and convs[2].groups == 1
    assert PEPX(64, 64, depthwise=True).conv3x3[0].groups == 48
    # the last conv gets BN only (no ReLU): the output can be negative
    assert not any(isinstance(x, nn.ReLU) for x in m.extend)
    assert (m(torch.randn(2, 64, 16, 16)) < 0).any()


def test_pepx_resnet_pepx_convs_are_full_and_covidnet_depthwise():
    def pepx_3x3(model):
        return [m.conv3x3[0] for m in model.modules() if isinstance(m, PEPX)]

    full = pepx_3x3(create_model("pepx_resnet", width=SMALL))
    assert len(full) == 4 and all(c.groups == 1 for c in full)
    dw = pepx_3x3(create_model("covidnet", width=SMALL))
    assert len(dw) == 3 + 4 + 6 + 3
    assert all(c.groups == c.in_channels == c.out_channels > 1 for c in dw)


@pytest.mark.parametrize("kwargs", [{}, {"pepx_input": "block"}, {"depths": (2, 1, 1, 2)}])
def test_abc_are_parameters_of_every_block_and_get_gradients(kwargs):
    model = create_model("pepx_resnet", width=SMALL, **kwargs)
    blocks = {n: m for n, m in model.named_modules() if isinstance(m, PEPXResNetBlock)}
    depths = kwargs.get("depths", (1, 1, 1, 1))
    assert len(blocks) == sum(depths)
    params = dict(model.named_parameters())
    model(torch.randn(2, 1, 64, 64)).logsumexp(1).sum().backward()
    for name in blocks:
        for s in "ABC":
            p = params[f"{name}.{s}"]
            assert p.shape == () and p.requires_grad
            assert p.grad is not None and p.grad.abs() > 0, f"{name}.{s}"
    scalars = residual_scalars(model)
    assert list(scalars) == [f"{n}.{s}" for n in blocks for s in "ABC"]
    assert all(v == 1.0 for v in scalars.values())
    assert "layer1.0.A" in scalars and "layer4.0.C" in scalars


def test_residual_scalars_track_learned_values_and_are_empty_elsewhere():
    model = create_model("pepx_resnet", width=SMALL, abc_init=(0.5, 1.0, 0.0))
    with torch.no_grad():
        model.layer2[0].C.fill_(0.25)
    s = residual_scalars(model)
    assert s["layer1.0.A"] == 0.5 and s["layer1.0.C"] == 0.0 and s["layer2.0.C"] == 0.25
    assert residual_scalars(create_model("resnet18", width=SMALL)) == {}
    assert residual_scalars(create_model("covidnet", width=SMALL)) == {}


def test_block_equation():
    """Y = F[F1(x) + x] + A*F1(x) + B*x + C*PEPX(X), output ReLU(Y), computed by hand from the parts."""
    block = PEPXResNetBlock(16, 32, stride=2, own_pepx=True).eval()
    with torch.no_grad():
        block.A.fill_(0.3), block.B.fill_(-0.7), block.C.fill_(1.9)
        x = torch.randn(2, 16, 16, 16)
        f1, sx, p = block.f1(x), block.shortcut(x), block.pepx(x)
        y = block.f(torch.relu(f1 + sx)) + 0.3 * f1 - 0.7 * sx + 1.9 * p
        torch.testing.assert_close(block(x), torch.relu(y))
        assert isinstance(block.shortcut[0], nn.Conv2d) and block.shortcut[0].stride == (2, 2)


def _perturb_backbone(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("layer") and p.dim() == 4:
                p.add_(torch.randn_like(p))


def _record(modules):
    out: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, o: out.append(o.detach().clone())) for m in modules]
    return out, hooks


def test_default_stream_never_reads_the_backbone():
    model = create_model("pepx_resnet", width=SMALL).eval()
    assert model.pepx_input == "stream" and len(model.pepx_stream) == 4
    x = torch.randn(2, 1, 64, 64)
    before, hooks = _record(model.pepx_stream)
    with torch.no_grad():
        y0 = model(x)
        _perturb_backbone(model)
        y1 = model(x)
    for h in hooks:
        h.remove()
    assert len(before) == 8
    for a, b in zip(before[:4], before[4:], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(y0, y1)  # the backbone did change
    # p_k has the shape of stage k's output
    assert [t.shape[1:] for t in before[:4]] == [(16, 16, 16), (32, 8, 8), (64, 4, 4), (128, 2, 2)]


def test_block_reading_pepx_depends_on_the_backbone():
    model = create_model("pepx_resnet", width=SMALL, pepx_input="block").eval()
    assert model.pepx_stream is None
    pepx = [model.layer2[0].pepx, model.layer4[0].pepx]
    before, hooks = _record(pepx)
    with torch.no_grad():
        x = torch.randn(2, 1, 64, 64)
        model(x)
        _perturb_backbone(model)
        model(x)
    for h in hooks:
        h.remove()
    assert not torch.allclose(before[0], before[2])
    assert not torch.allclose(before[1], before[3])


def test_covidnet_dense_sums_use_every_output_once():
    """Stage output = ReLU(shortcut + all PEPX outputs); each PEPX j>1 reads ReLU(shortcut + earlier ones)."""
    model = create_model("covidnet", width=SMALL, zero_init_last=False).eval()
    stage = model.stage3
    assert len(stage.blocks) == 6
    outs, hooks = _record(stage.blocks)
    ins: list[torch.Tensor] = []
    for b in stage.blocks:
        hooks.append(b.register_forward_pre_hook(lambda _m, a: ins.append(a[0].detach().clone())))
    with torch.no_grad():
        x = torch.randn(1, model.stage2.blocks[0].out_ch, 16, 16)
        y = stage(x)
        r = stage.proj(x)
    for h in hooks:
        h.remove()
    torch.testing.assert_close(ins[0], x)
    for j in range(1, 6):
        torch.testing.assert_close(ins[j], torch.relu(r + sum(outs[:j])))
    torch.testing.assert_close(y, torch.relu(r + sum(outs)))
    assert all(o.abs().max() > 0 for o in outs)


def test_covidnet_zero_init_last_starts_each_stage_as_its_shortcut():
    model = create_model("covidnet", width=SMALL).eval()
    with torch.no_grad():
        x = torch.randn(1, model.stage1.blocks[0].in_chans, 16, 16)
        torch.testing.assert_close(model.stage1(x), torch.relu(model.stage1.proj(x)))


def test_covidnet_variants_and_flatten_head():
    small = create_model("covidnet", variant="small")
    large = create_model("covidnet", variant="large")
    assert sum(p.numel() for p in large.parameters()) > sum(p.numel() for p in small.parameters())
    flat = COVIDNet(width=SMALL, head="flatten", img_size=128)
    assert flat.fc1[0].in_features == flat.num_features * 4 * 4
    assert flat(torch.randn(2, 1, 128, 128)).shape == (2, 3)
    assert flat(torch.randn(2, 1, 96, 96)).shape == (2, 3)
    with pytest.raises(ValueError):
        create_model("covidnet", variant="medium")


@pytest.mark.parametrize("name", MODELS)
def test_channels_last_matches_contiguous(name):
    model = create_model(name, width=SMALL, in_chans=3).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_sgd_steps_drive_the_loss_down(name):
    model = create_model(name, width=SMALL).train()
    x = torch.randn(12, 1, 64, 64)
    y = torch.arange(12) % 3
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    losses = []
    for _ in range(12):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(map(lambda v: v == v, losses))
    assert min(losses[-3:]) < 0.5 * losses[0], losses


def _sgd_steps(model, steps=3):
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    x, y = torch.randn(4, 1, 64, 64), torch.tensor([0, 1, 2, 0])
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def test_frozen_abc_stay_at_their_init_and_keep_the_state_dict_keys():
    torch.manual_seed(0)
    frozen = create_model("pepx_resnet", width=SMALL, learn_abc=False, abc_init=(1.0, 1.0, 1.0))
    learned = create_model("pepx_resnet", width=SMALL)
    assert list(frozen.state_dict()) == list(learned.state_dict())  # weights load either way
    assert not any(n.endswith((".A", ".B", ".C")) for n, _ in frozen.named_parameters())
    _sgd_steps(frozen)
    _sgd_steps(learned)
    assert set(residual_scalars(frozen).values()) == {1.0}
    assert any(v != 1.0 for v in residual_scalars(learned).values())  # the same steps move learned ones


def test_no_pepx_path_is_the_bare_backbone():
    torch.manual_seed(0)
    model = create_model("pepx_resnet", width=SMALL, use_pepx=False)
    assert model.pepx_stream is None
    assert not any("pepx" in n or n.endswith(".C") for n in model.state_dict())
    assert list(residual_scalars(model))[:2] == ["layer1.0.A", "layer1.0.B"]
    assert not any(k.endswith(".C") for k in residual_scalars(model))
    block = PEPXResNetBlock(16, 32, stride=2, use_pepx=False).eval()
    with torch.no_grad():
        block.A.fill_(0.3), block.B.fill_(-0.7)
        x = torch.randn(2, 16, 16, 16)
        f1, sx = block.f1(x), block.shortcut(x)
        torch.testing.assert_close(block(x), torch.relu(block.f(torch.relu(f1 + sx)) + 0.3 * f1 - 0.7 * sx))
    with_pepx = create_model("pepx_resnet", width=SMALL)
    assert count_params(model) < count_params(with_pepx)
    _sgd_steps(model)  # trains
