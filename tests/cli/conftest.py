"""The command tests' small checkpoint, one file for the whole session.

The automatic backend choice is remembered per weights file (by content) in the session's
weights cache, so the commands that run on ``--backend auto`` convert and time the small
model once, whichever test comes first.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def small_ckpt(small_model, tmp_path_factory) -> Path:
    from mobilesam.checkpoint import save_checkpoint

    return save_checkpoint(small_model, tmp_path_factory.mktemp("ckpt") / "small.safetensors")
