"""Resumable training state: atomic, fsynced checkpoint files and RNG capture."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from mobilesam.distill.run_state import capture_rng, load_state, restore_rng, save_state


def test_state_round_trips_and_replaces_the_old_file(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_state(path, {"step": 1, "w": torch.zeros(3)})
    save_state(path, {"step": 2, "w": torch.ones(3)})
    state = load_state(path)
    assert state["step"] == 2 and torch.equal(state["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_state(path, {"step": 7})
    with pytest.raises(Exception):  # noqa: B017 - pickling a lambda fails, type varies
        save_state(path, {"step": 8, "bad": lambda: None})
    assert load_state(path)["step"] == 7
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_the_data_is_synced_before_the_rename(tmp_path, monkeypatch):
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(
        os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1]
    )
    save_state(tmp_path / "checkpoint.pt", {"step": 1})
    assert events == ["fsync", "replace"]


def test_rng_capture_restores_every_generator():
    state = capture_rng()
    first = (torch.rand(2), np.random.rand(2), random.random())
    restore_rng(state)
    again = (torch.rand(2), np.random.rand(2), random.random())
    assert torch.equal(first[0], again[0])
    assert np.array_equal(first[1], again[1]) and first[2] == again[2]
