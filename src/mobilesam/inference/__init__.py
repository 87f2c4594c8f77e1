"""Inference: transforms, the prompted predictor, mask utilities, automatic masks."""
