"""`mobilesam everything` on a folder: progress with images/s and ETA, throughput at the end."""

from __future__ import annotations

import re

import numpy as np
from PIL import Image

from mobilesam.cli import build_parser, main
from mobilesam.inference.everything_pipeline import SEQUENTIAL, PipelineOptions

FAST = ["--points-per-side", "2", "--backend", "torch-exact"]


def test_progress_shows_rate_and_eta_and_the_last_line_throughput(
    tmp_path, dog_image, small_ckpt, capsys
):
    d = tmp_path / "in"
    d.mkdir()
    for i in range(3):
        Image.fromarray(np.ascontiguousarray(dog_image[i::10, ::10])).save(d / f"{i}.png")
    out = tmp_path / "out"
    assert main(["everything", str(d), "--out", str(out), "--checkpoint", str(small_ckpt),
                 *FAST]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert re.search(r"\d+/3 \[", err), err
    assert re.search(r"\d+(\.\d+)?img/s", err), "the bar shows images per second"
    assert re.search(r"ETA \d\d:\d\d", err), "the bar shows the time left"
    last = err.strip().splitlines()[-1]
    assert "3 image(s) segmented, 0 already done, 0 skipped" in last
    assert re.search(r"\d+ images/hour", last), last
    assert sorted(p.name for p in out.iterdir()) == ["0", "1", "2"]


def test_pipeline_flags():
    parse = build_parser().parse_args
    from mobilesam.cli.everything import _pipeline_options

    assert _pipeline_options(parse(["everything", "x.jpg", "--out", "o"])) == PipelineOptions()
    args = parse(["everything", "x.jpg", "--out", "o", "--prefetch", "4", "--write-queue", "1"])
    assert _pipeline_options(args) == PipelineOptions(prefetch=4, write_queue=1)
    assert _pipeline_options(parse(["everything", "x", "--out", "o", "--sequential"])) == SEQUENTIAL
