"""Model facts live in the registry (issue 19 item 3): a network declared in one place - its class and its
`register_model` call, both below - appears in `pepx models`, the CLI help, the reproduce report's tables,
figures and paired tests, the input gate's stages and Grad-CAM, with no other edit."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.colors import to_hex
from torch import nn

from fakes.runs import fake_grid
from pepx.cli import main
from pepx.errors import ConfigError
from pepx.experiments import figures, get_profile, reproduce
from pepx.models import count_params, create_model, model_infos, register_model, unregister_model
from pepx.serving.gate.features import stage_names
from pepx.serving.gradcam import default_layer, grad_cam

NAME, DISPLAY, COLOR = "tiny_net", "Tiny-Net", "#8c564b"


class TinyNet(nn.Module):
    """Two conv stages and a linear head.

    Args:
        num_classes: outputs. in_chans: input channels. width: channel multiplier (8 channels at 1).
    """

    def __init__(self, num_classes: int = 3, in_chans: int = 1, width: float = 1.0) -> None:
        super().__init__()
        c = max(1, round(8 * width))
        self.stem = nn.Sequential(nn.Conv2d(in_chans, c, 3, padding=1), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(2 * c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(self.stem(x)).mean(dim=(2, 3)))


@pytest.fixture
def tiny():
    register_model(TinyNet, name=NAME, display=DISPLAY, color=COLOR, stages=("stem", "body"), order=3)
    yield NAME
    unregister_model(NAME)


def test_the_three_networks_keep_their_names_colours_and_order():
    facts = [(i.name, i.display, i.color, i.stages[-1], i.default_width) for i in model_infos()]
    assert facts == [("pepx_resnet", "PEPX-ResNet", "C3", "layer4", 1.0),
                     ("resnet18", "ResNet18", "C0", "layer4", 1.0),
                     ("covidnet", "COVID-Net", "C2", "stage4", 1.0)]
    assert get_profile("smoke").models == tuple(f[0] for f in facts)  # the grid's default networks


def test_a_new_network_appears_in_pepx_models_and_the_cli_help(tiny, capsys):
    assert main(["models", "--size", "32"]) == 0
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()[2:]}
    assert float(rows[NAME][0]) == pytest.approx(count_params(TinyNet()) / 1e6, abs=5e-4)  # 0.001 M
    with pytest.raises(SystemExit):
        main(["reproduce", "--help"])
    assert f"subset of pepx_resnet resnet18 covidnet {NAME}" in " ".join(capsys.readouterr().out.split())


def test_a_new_network_appears_in_the_reproduce_tables_tests_and_figures(tiny, tmp_path, monkeypatch):
    profile = replace(get_profile("smoke", epochs=3, seeds=1, n_boot=100), models=("pepx_resnet", NAME),
                      losses=("focal",))
    out = fake_grid(tmp_path / "grid", profile, {"pepx_resnet": 0.95, NAME: 0.5})
    drawn, save = {}, figures.save

    def keep(fig, path):
        drawn[path.name] = fig
        return save(fig, path)

    monkeypatch.setattr(figures, "save", keep)
    text = reproduce(profile=profile, out=out, log=lambda _: None).read_text()

    table1 = pd.read_csv(out / "table1.csv")
    assert table1[["model", "network"]].values.tolist() == [["pepx_resnet", "PEPX-ResNet"], [NAME, DISPLAY]]
    assert f"| {DISPLAY} | focal |" in (out / "table1.md").read_text()
    tests = pd.read_csv(out / "paired_tests.csv")
    assert tests[["a", "b"]].values.tolist() == [["PEPX-ResNet + focal", f"{DISPLAY} + focal"]]
    assert f"PEPX-ResNet + focal vs {DISPLAY} + focal:" in text  # the headline sentences
    for name in ("figure9.png", "figure10.png"):
        lines = [line for ax in drawn[name].axes for line in ax.get_lines()]
        ours = [line for line in lines if line.get_label() == f"{DISPLAY} + focal"]
        assert ours and all(to_hex(line.get_color()) == COLOR for line in ours), name
        assert {to_hex(line.get_color()) for line in lines if line.get_label() == "PEPX-ResNet + focal"} == \
            {to_hex("C3")}


def test_grad_cam_and_the_gate_read_a_new_networks_layers(tiny):
    torch.manual_seed(0)
    model = create_model(NAME, width=0.5).eval()
    assert default_layer(model) == "body" and stage_names(model) == ("stem", "body")
    x = torch.rand(1, 1, 16, 16)
    cam, index, logits = grad_cam(model, x)
    assert cam.shape == (16, 16) and cam.min() == 0.0 and cam.max() == pytest.approx(1.0)
    assert index == int(logits.argmax()) and np.isfinite(cam).all()


def test_an_unregistered_network_names_no_default_layer():
    with pytest.raises(ConfigError, match="TinyNet registers no Grad-CAM layer"):
        default_layer(TinyNet())
    with pytest.raises(ConfigError, match="TinyNet registers no stages"):
        stage_names(TinyNet())
