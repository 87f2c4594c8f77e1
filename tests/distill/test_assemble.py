"""Assembly at the real size: a vit_t student of a standard SAM teacher is the vit_t model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mobilesam.build import build_image_encoder, get_config, sam_model_registry
from mobilesam.checkpoint import CheckpointError, read_state_dict, save_checkpoint
from mobilesam.distill.assemble import assemble
from mobilesam.distill.students import list_students, student_model_config


def test_student_configs_take_the_teachers_decoder_and_the_registered_name():
    for teacher in ("vit_b", "vit_h"):
        cfg = student_model_config("vit_t", get_config(teacher))
        assert cfg.name == "vit_t" and cfg == get_config("vit_t")
    small = get_config("vit_h").replace(image_size=256)
    cfg = student_model_config("vit_t", small)
    assert cfg.name == "vit_t" and cfg.image_size == 256  # not the registered 1024 model
    for name in list_students():
        c = student_model_config(name, get_config("vit_h"))
        assert c.prompt_embed_dim == 256 and c.image_size == 1024 and c.name == name


def test_assembled_vit_t_loads_through_the_registry_and_predicts(tmp_path, generated_checkpoint):
    teacher_file = generated_checkpoint("vit_t")  # standard SAM prompt encoder + mask decoder
    config = student_model_config("vit_t", get_config("vit_h"))
    torch.manual_seed(0)
    encoder = build_image_encoder(config)
    student_file = save_checkpoint(encoder, tmp_path / "student_encoder.safetensors", config)
    out = tmp_path / "mobilesam_distilled.safetensors"
    assemble(student_file, teacher_file, out)
    model = sam_model_registry["vit_t"](checkpoint=out)
    teacher_sd = read_state_dict(teacher_file)
    for k, v in model.state_dict().items():
        if k.startswith(("prompt_encoder.", "mask_decoder.")):
            assert torch.equal(v, teacher_sd[k]), k
        else:
            assert k.startswith("image_encoder."), k
    assert torch.equal(model.image_encoder.neck[0].weight, encoder.state_dict()["neck.0.weight"])
    from mobilesam.inference.predictor import SamPredictor

    predictor = SamPredictor(model)
    predictor.set_image(np.zeros((40, 60, 3), np.uint8))
    masks, _, _ = predictor.predict(box=np.array([5, 5, 30, 30]), multimask_output=False)
    assert masks.shape == (1, 40, 60)


def test_assembly_reports_what_does_not_fit(tmp_path, generated_checkpoint):
    config = student_model_config("vit_t_micro", get_config("vit_h"))
    student_file = save_checkpoint(build_image_encoder(config), tmp_path / "s.safetensors", config)
    encoder_only = tmp_path / "enc.pt"
    torch.save({"image_encoder.x": torch.zeros(1)}, encoder_only)
    with pytest.raises(CheckpointError, match="no prompt_encoder"):
        assemble(student_file, encoder_only)
    wrong = tmp_path / "wrong.pt"
    sd = read_state_dict(generated_checkpoint("vit_t"))
    sd["mask_decoder.iou_token.weight"] = torch.zeros(2, 7)
    torch.save(sd, wrong)
    with pytest.raises(CheckpointError, match="iou_token"):
        assemble(student_file, wrong)
    with pytest.raises(FileNotFoundError, match="run folder"):
        assemble(tmp_path, generated_checkpoint("vit_t"))
