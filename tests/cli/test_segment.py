"""`mobilesam segment` and `mobilesam weights`: outputs, errors, the weights cache."""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mobilesam.cli import main

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "dog.jpg"


def test_segment_writes_mask_overlay_and_json(tmp_path, generated_checkpoint, capsys):
    out, ov = tmp_path / "m.png", tmp_path / "o.png"
    rc = main(
        [
            "segment",
            str(EXAMPLE),
            "--point",
            "400,260",
            "--point",
            "100,80,0",
            "--box",
            "300,150,600,500",
            "--multimask",
            "--checkpoint",
            str(generated_checkpoint("vit_t")),
            "--backend",
            "torch-exact",
            "--out",
            str(out),
            "--overlay",
            str(ov),
        ]
    )
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["masks"]) == 3 and report["backend"] == "torch-exact"
    mask = np.array(Image.open(out))
    assert mask.shape == (534, 800) and set(np.unique(mask)) <= {0, 255}
    assert (mask > 0).sum() == report["masks"][report["best"]]["area"]
    assert np.array(Image.open(ov)).shape == (534, 800, 3)


def test_segment_needs_a_prompt(tmp_path, capsys):
    assert main(["segment", str(EXAMPLE), "--out", str(tmp_path / "m.png")]) == 2
    assert "--point" in capsys.readouterr().err


def test_segment_bad_point_syntax(tmp_path):
    with pytest.raises(SystemExit):
        main(["segment", str(EXAMPLE), "--point", "1;2", "--out", str(tmp_path / "m.png")])


def test_segment_unreadable_image(tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    assert main(["segment", str(bad), "--point", "1,1", "--out", str(tmp_path / "m.png")]) == 2
    err = capsys.readouterr().err
    assert "bad.jpg" in err and "not an image" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--point", "4000,260"], "--point 4000,260 is outside the 800x534 image"),
        (["--point", "260,600"], "--point 260,600 is outside the 800x534 image"),
        (["--point=-1,5"], "--point -1,5 is outside"),
        (["--box", "810,10,900,90"], "--box 810,10,900,90 misses the 800x534 image"),
        (["--box", "10,10,5,50"], "--box 10,10,5,50 must be X0,Y0,X1,Y1 with X1 >= X0"),
        (["--point", "1,1", "--out", "m.jpg"], "name it *.png"),
        (["--point", "1,1", "--overlay", "o.gif"], "the suffix picks the format"),
    ],
)
def test_segment_refuses_prompts_off_the_image_and_unknown_outputs(
    tmp_path, monkeypatch, capsys, args, message
):
    monkeypatch.chdir(tmp_path)
    out = [] if "--out" in args else ["--out", "m.png"]
    # no weights given: the checks come before any loading
    assert main(["segment", str(EXAMPLE), *args, *out]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_segment_writes_the_overlay_in_the_format_its_name_asks(
    tmp_path, generated_checkpoint, capsys
):
    ckpt = str(generated_checkpoint("vit_t"))
    base = ["segment", str(EXAMPLE), "--point", "799,533", "--checkpoint", ckpt]
    for name, fmt in (("o.jpg", "JPEG"), ("o.webp", "WEBP")):
        args = [*base, "--backend", "torch-exact", "--out", str(tmp_path / "m.png")]
        assert main([*args, "--overlay", str(tmp_path / name)]) == 0
        with Image.open(tmp_path / name) as im:
            assert im.format == fmt and im.size == (800, 534)
    capsys.readouterr()


def test_segment_auto_backend_is_chosen_once_and_remembered(tmp_path, small_ckpt, capsys):
    # The session's weights cache (tests/conftest.py) is shared with the other commands'
    # tests on this checkpoint: whichever runs first measures, and the choice is remembered.
    from mobilesam.backends.artifacts import ArtifactStore, weights_digest

    args = ["segment", str(EXAMPLE), "--point", "400,260", "--checkpoint", str(small_ckpt)]
    assert main([*args, "--out", str(tmp_path / "a.png")]) == 0
    first = json.loads(capsys.readouterr().out)
    store = ArtifactStore("vit_t", weights_digest(small_ckpt))
    choice = store.read_choice()
    assert choice is not None and choice["key"] == store.key
    assert first["backend"] == choice["backend"]
    assert main([*args, "--out", str(tmp_path / "b.png")]) == 0
    assert json.loads(capsys.readouterr().out)["backend"] == choice["backend"]
    assert store.read_choice() == choice  # remembered, not measured again
    np.testing.assert_array_equal(
        np.array(Image.open(tmp_path / "a.png")), np.array(Image.open(tmp_path / "b.png"))
    )


def test_segment_without_weights_says_where_to_put_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MOBILESAM_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(
        "mobilesam.hub.OFFICIAL_WEIGHTS",
        {
            k: v.__class__(v.model, v.filename, "http://127.0.0.1:9/none.pt", 1)
            for k, v in __import__("mobilesam.hub").hub.OFFICIAL_WEIGHTS.items()
        },
    )
    rc = main(["segment", str(EXAMPLE), "--point", "1,1", "--out", str(tmp_path / "m.png")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "mobile_sam.pt" in err and str(tmp_path / "cache") in err
    assert not (tmp_path / "m.png").exists()
    leftovers = list((tmp_path / "cache").iterdir()) if (tmp_path / "cache").exists() else []
    assert leftovers == []


def test_segment_bad_checkpoint_is_reported(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    rc = main(
        [
            "segment",
            str(EXAMPLE),
            "--point",
            "1,1",
            "--checkpoint",
            str(bad),
            "--out",
            str(tmp_path / "m.png"),
        ]
    )
    assert rc == 2 and "not a readable PyTorch checkpoint" in capsys.readouterr().err


@pytest.fixture()
def file_server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_weights_download_into_cache_atomically(
    tmp_path, monkeypatch, file_server, small_model, capsys
):
    root, base = file_server
    torch.save(small_model.state_dict(), root / "w.pt")
    (root / "junk.pt").write_bytes(b"<html>not weights</html>")
    monkeypatch.setenv("MOBILESAM_HOME", str(tmp_path / "cache"))
    assert main(["weights", "download", "vit_t", "--url", f"{base}/junk.pt"]) == 2
    assert "not a valid checkpoint" in capsys.readouterr().err
    assert list((tmp_path / "cache").iterdir()) == []
    assert main(["weights", "download", "vit_t", "--url", f"{base}/w.pt"]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path == tmp_path / "cache" / "mobile_sam.pt" and path.is_file()
    assert main(["weights", "list"]) == 0
    assert "cached" in capsys.readouterr().out
    assert main(["weights", "path", "vit_b"]) == 0
    assert capsys.readouterr().out.strip().endswith("sam_vit_b_01ec64.pth")
    assert main(["weights", "path", "vit_x"]) == 2


def test_python_dash_m_help():
    out = subprocess.run(
        [sys.executable, "-m", "mobilesam", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "segment" in out and "weights" in out


def test_segment_unknown_model_or_device_is_reported(tmp_path, generated_checkpoint, capsys):
    args = ["segment", str(EXAMPLE), "--point", "1,1", "--out", str(tmp_path / "m.png")]
    assert main([*args, "--model", "vit_q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mobilesam: error: unknown model 'vit_q'; registered: ")
    ckpt = str(generated_checkpoint("vit_t"))
    assert main([*args, "--checkpoint", ckpt, "--device", "nodevice"]) == 2
    assert "cannot move the model to device 'nodevice'" in capsys.readouterr().err
    assert not (tmp_path / "m.png").exists()


def test_segment_as_a_program_exits_quickly_with_its_output_complete(
    tmp_path, generated_checkpoint
):
    # `python -m mobilesam segment` ends with os._exit after flushing: the JSON on a pipe and
    # both PNGs must be complete, and the exit status that of the command.
    out, ov = tmp_path / "m.png", tmp_path / "o.png"
    args = ["segment", str(EXAMPLE), "--point", "400,260", "--backend", "torch-exact"]
    args += ["--checkpoint", str(generated_checkpoint("vit_t")), "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "mobilesam", *args, "--overlay", str(ov)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (np.array(Image.open(out)) > 0).sum() == report["masks"][report["best"]]["area"]
    assert np.array(Image.open(ov)).shape == (534, 800, 3)
    failed = subprocess.run(
        [sys.executable, "-m", "mobilesam", "segment", str(EXAMPLE), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert failed.returncode == 2 and "give at least one --point" in failed.stderr
