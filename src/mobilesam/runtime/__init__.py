"""Torch-free inference on exported ONNX graphs (numpy, Pillow and onnxruntime only).

from mobilesam.runtime import OnnxPredictor
predictor = OnnxPredictor.from_dir("exported/")      # encoder.onnx + decoder.onnx
predictor.set_image(rgb)
masks, scores, low_res = predictor.predict(point_coords=[[500, 375]], point_labels=[1])
"""

from .onnx_backend import load_session
from .predictor import OnnxPredictor

__all__ = ["OnnxPredictor", "load_session"]
