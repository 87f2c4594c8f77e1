"""Export to ONNX (``mobilesam.export.onnx``); the graphs run in ``mobilesam.runtime``."""
