"""The browser's decoder graph: exported apart from the serving process."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")


def test_export_while_another_thread_decodes_with_the_same_model(small_model, tmp_path):
    """torch.export swaps the traced modules' parameters for fake tensors while it runs; done
    in the serving process it broke a concurrent request on the same model (seen in a browser
    test as a 500 on opening an image). Exported apart, requests keep working, and the graph
    computes what the model does."""
    from mobilesam import SamPredictor
    from mobilesam.serve.webruntime import export_apart

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)  # model-sized: no resize
    pred = SamPredictor(small_model)
    pred.set_image(image)
    point, label = np.array([[100.0, 120.0]]), np.array([1])
    expected_masks, expected_iou, expected_low = pred.predict(point, label, multimask_output=False)

    stop = threading.Event()
    errors: list[BaseException] = []
    decodes = 0

    def decode_until_stopped() -> None:
        nonlocal decodes
        while not stop.is_set():
            try:
                masks, _, _ = pred.predict(point, label, multimask_output=False)
                assert np.array_equal(masks, expected_masks)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
                return
            decodes += 1

    worker = threading.Thread(target=decode_until_stopped)
    worker.start()
    try:
        export_apart(small_model, tmp_path / "decoder.onnx")
    finally:
        stop.set()
        worker.join()
    assert not errors, f"a decode during the export failed: {errors[0]!r}"
    assert decodes > 0

    session = ort.InferenceSession(str(tmp_path / "decoder.onnx"))
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["mobilesam.graph"] == "decoder"
    assert int(meta["mobilesam.image_size"]) == small_model.image_size
    mask_size = small_model.prompt_encoder.mask_input_size
    _, iou, low = session.run(
        None,
        {
            "image_embeddings": pred.get_image_embedding().numpy(),
            "point_coords": np.array([[[100.0, 120.0], [0.0, 0.0]]], np.float32),
            "point_labels": np.array([[1.0, -1.0]], np.float32),
            "mask_input": np.zeros((1, 1, *mask_size), np.float32),
            "has_mask_input": np.zeros(1, np.float32),
            "orig_im_size": np.array([256.0, 256.0], np.float32),
        },
    )
    np.testing.assert_allclose(iou[0, :1], expected_iou, atol=1e-4)
    np.testing.assert_allclose(low[0, :1], expected_low, atol=1e-3)
