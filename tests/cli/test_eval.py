"""``mobilesam eval`` on a few generated scenes with small random models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mobilesam.cli import main


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from mobilesam.build import build_sam
    from mobilesam.checkpoint import save_checkpoint
    from mobilesam.data import ShapesConfig, write_scenes
    from mobilesam.training.models import SHAPES_STUDENT

    root = tmp_path_factory.mktemp("evalworld")
    write_scenes(root / "scenes", "heldout", 2, ShapesConfig(size=128), progress=False)
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = build_sam(SHAPES_STUDENT.replace(image_size=128))
        paths.append(save_checkpoint(model, root / f"m{seed}.safetensors", model.config))
    return root, paths


def test_eval_against_reference_and_gt_writes_json(world, tmp_path, capsys):
    root, (a, b) = world
    out = tmp_path / "r.json"
    code = main([
        "eval", "--model", str(a), "--reference", str(b), "--images", str(root / "scenes"),
        "--gt", str(root / "scenes" / "gt"), "--distances", "100", "300", "--json", str(out),
        "--no-progress",
    ])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "A vs B" in printed and "A vs GT" in printed and "two_points@300" in printed
    result = json.loads(out.read_text())
    protos = result["protocols"]
    assert set(protos) == {"point", "box", "two_points@100", "two_points@300"}
    n_objects = protos["point"]["objects"]
    assert n_objects >= 2 and protos["box"]["objects"] == n_objects
    for p in protos.values():
        for key in ("a_vs_b", "a_vs_gt", "b_vs_gt"):
            assert 0.0 <= p[key] <= 1.0
    assert protos["two_points@100"]["objects"] + protos["two_points@100"]["skipped"] == n_objects


def test_a_model_against_itself_agrees_perfectly(world, capsys):
    root, (a, _) = world
    code = main([
        "eval", "--model", str(a), "--reference", str(a), "--images", str(root / "scenes"),
        "--gt", str(root / "scenes" / "gt"), "--protocols", "point", "--no-progress",
    ])  # fmt: skip
    assert code == 0
    table = capsys.readouterr().out
    rows = [line for line in table.splitlines() if line.startswith("point")]
    assert len(rows) == 1 and rows[0].split()[3] == "1.0000"


def test_clear_errors(world, tmp_path, capsys):
    root, (a, _) = world
    assert main(["eval", "--model", str(a), "--images", str(root / "scenes")]) == 2
    assert "--reference" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["eval", "--model", str(a), "--reference", str(a), "--images", str(empty)]) == 2
    assert "no images" in capsys.readouterr().err
    code = main(["eval", "--model", str(a), "--gt", str(root), "--images", str(root / "scenes")])
    assert code == 2 and "no ground truth for 2 images" in capsys.readouterr().err
    gt = str(root / "scenes" / "gt")
    missing = str(tmp_path / "nope.safetensors")
    code = main(["eval", "--model", missing, "--gt", gt, "--images", str(root / "scenes")])
    assert code == 2 and "not a file" in capsys.readouterr().err


def test_model_spec_forms(world, tmp_path):
    from mobilesam.cli.eval import parse_model_spec
    from mobilesam.loading import ModelLoadError
    from mobilesam.training.assets import shipped_checkpoint

    _, (a, _) = world
    assert parse_model_spec(str(a)) == (None, a)
    assert parse_model_spec("shapes_student") == (None, shipped_checkpoint("shapes_student"))
    assert parse_model_spec("vit_t=w.pt") == ("vit_t", Path("w.pt"))
    pt = tmp_path / "weights.pt"
    pt.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="does not record its config; use NAME="):
        parse_model_spec(str(pt))
    with pytest.raises(ModelLoadError, match="not a file, not NAME=WEIGHTS"):
        parse_model_spec(str(tmp_path / "missing.safetensors"))


def test_name_and_weights_errors_come_from_the_loader(world, tmp_path, capsys):
    from mobilesam.checkpoint import read_state_dict

    root, (a, _) = world
    pt = tmp_path / "student.pt"
    torch.save(read_state_dict(a), pt)  # a bare state dict: the name decides the architecture
    base = ["eval", "--gt", str(root / "scenes" / "gt"), "--images", str(root / "scenes")]
    assert main([*base, "--model", f"vit_t={pt}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mobilesam: error:") and "student.pt: checkpoint does not fit" in err
    assert main([*base, "--model", f"vit_t={tmp_path / 'none.pt'}"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert main([*base, "--model", f"vit_q={pt}"]) == 2
    assert "unknown model 'vit_q'" in capsys.readouterr().err
