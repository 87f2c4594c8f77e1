"""``mobilesam serve``: argument handling, and a real server process answering /health."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from mobilesam.cli import build_parser, main


def test_parser_defaults():
    args = build_parser().parse_args(["serve", "--random-weights"])
    assert (args.host, args.port, args.model) == ("127.0.0.1", 8000, "vit_t")


def test_conflicting_or_bad_options(capsys):
    assert main(["serve", "--random-weights", "--checkpoint", "x.pt"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["serve", "--random-weights", "--max-pixels", "0"]) == 2
    assert "max_pixels" in capsys.readouterr().err
    assert main(["serve", "--checkpoint", "/nonexistent/weights.pt"]) == 2
    assert "not found" in capsys.readouterr().err


def test_serve_process_answers_health(tmp_path):
    pytest.importorskip("uvicorn")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "mobilesam", "serve", "--random-weights", "--port", str(port)]
    cmd += ["--backend", "torch-exact"]  # auto would first measure every backend (minutes)
    log = open(tmp_path / "server.log", "w+b")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                    health = json.loads(r.read())
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail(f"server did not come up:\n{log.read().decode(errors='replace')}")
                time.sleep(0.3)
        assert health["weights"] == "random" and health["image_size"] == 1024
        log.seek(0)
        text = log.read()
        assert b"RANDOM weights" in text and b"image encoder backend: torch-exact" in text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
