"""Placeholder until the automatic mask generator lands."""


class SamAutomaticMaskGenerator:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError("automatic mask generation is not implemented yet")
