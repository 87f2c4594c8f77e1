"""Torch-free inference: exported ONNX graphs on onnxruntime or OpenVINO, the decoder in numpy.

from mobilesam.runtime import OnnxPredictor
predictor = OnnxPredictor.from_dir("exported/")      # encoder.onnx + decoder.onnx
predictor.set_image(rgb)
masks, scores, low_res = predictor.predict(point_coords=[[500, 375]], point_labels=[1])
"""

from ..lazy import lazy_exports

# Lazy (PEP 562): importing one backend's module (e.g. the numpy decoder for OpenVINO)
# must not import onnxruntime.
__getattr__, __dir__ = lazy_exports(
    __name__, {"OnnxPredictor": "predictor", "load_session": "onnx_backend"}
)
__all__ = ["OnnxPredictor", "load_session"]
