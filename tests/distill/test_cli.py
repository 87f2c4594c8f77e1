"""``mobilesam distill``: flags derived from the configs, and the four steps end to end."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil

import pytest

from mobilesam.cli import main
from mobilesam.distill.config import (
    CacheConfig,
    DistillConfig,
    add_config_arguments,
    config_from_args,
)


@pytest.mark.parametrize("cls", [CacheConfig, DistillConfig])
def test_every_config_field_has_a_flag_that_round_trips(cls):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, cls)
    flags = {a.dest for a in parser._actions}
    assert {f.name for f in dataclasses.fields(cls)} <= flags
    required = ["--images", "x", "--out", "y"] if cls is CacheConfig else ["--out", "y"]
    default = config_from_args(cls, parser.parse_args(required))
    assert default == cls(**{"out": "y", **({"images": "x"} if cls is CacheConfig else {})})
    if cls is DistillConfig:
        argv = "--out r --lr 0.5 --steps 7 --no-verify-cache --resume --student-init w.st"
        args = parser.parse_args(argv.split())
        cfg = config_from_args(cls, args)
        assert (cfg.lr, cfg.steps, cfg.verify_cache, cfg.resume) == (0.5, 7, False, True)
        assert cfg.student_init == "w.st" and cfg.batch_size == 8


def test_cli_cache_train_assemble_report(tmp_path, image_folder, teacher_checkpoint, capsys):
    images = tmp_path / "imgs"
    shutil.copytree(image_folder, images)
    (images / "sub2" / "zz_bad.jpg").write_bytes(b"nope")
    cache, run = tmp_path / "cache", tmp_path / "run"
    common = ["--num-workers", "0", "--quiet"]
    assert main(["distill", "cache", "--images", str(images), "--out", str(cache),
                 "--teacher-checkpoint", str(teacher_checkpoint), "--shard-size", "10",
                 *common]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "37 images" in out and "cache complete: 36 embeddings" in out
    assert "unreadable: sub2/zz_bad.jpg" in out
    # a second run finds everything done
    assert main(["distill", "cache", "--images", str(images), "--out", str(cache),
                 "--teacher-checkpoint", str(teacher_checkpoint), "--shard-size", "10",
                 *common]) == 0  # fmt: skip
    assert "0 shards computed, 4 reused" in capsys.readouterr().out

    assert main(["distill", "train", "--cache", str(cache), "--out", str(run), "--student",
                 "vit_t_micro", "--steps", "4", "--batch-size", "4", "--holdout", "4",
                 "--log-every", "1", *common]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "steps: 4 / 4 (finished)" in out and "held-out MSE" in out
    assert (run / "curves.png").is_file()
    # training again into the same folder without --resume is refused, clearly
    assert main(["distill", "train", "--cache", str(cache), "--out", str(run), *common]) == 2
    assert "--resume" in capsys.readouterr().err

    model = tmp_path / "distilled.safetensors"
    assert main(["distill", "assemble", "--student", str(run), "--teacher-checkpoint",
                 str(teacher_checkpoint), "--out", str(model)]) == 0  # fmt: skip
    assert "vit_t_micro at 128 px" in capsys.readouterr().out
    assert main(["distill", "report", str(run), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["finished"] and summary["steps_done"] == 4
    assert summary["untrained_mse"] > 0 and summary["curves"].endswith("curves.png")

    assert main(["distill", "assemble", "--student", str(tmp_path), "--teacher-checkpoint",
                 str(teacher_checkpoint), "--out", str(model)]) == 2  # fmt: skip
    assert "not a distillation run folder" in capsys.readouterr().err


def test_cli_lists_students(capsys):
    assert main(["distill", "students"]) == 0
    out = capsys.readouterr().out
    for name in ("vit_t", "vit_t_micro", "vit_t_small", "vit_t_11m", "vit_t_21m"):
        assert name in out
    assert "5.74M" in out
