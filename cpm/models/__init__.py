"""Networks. ``HEADS`` maps the ``model.head`` config value to the class that builds it; ``BACKBONES``
(in `cpm.models.backbones`) maps ``model.backbone`` to the image feature extractor a head sits on."""

from cpm.models.backbones import BACKBONES
from cpm.models.cpm import ConvolutionalPoseMachine

HEADS = {"heatmap": ConvolutionalPoseMachine}

__all__ = ["BACKBONES", "HEADS", "ConvolutionalPoseMachine", "build_model"]


def build_model(head: str, **kwargs):
    """``build_model("heatmap", num_joints=15, stages=4, ...)``: keyword arguments go to the class."""
    try:
        cls = HEADS[head]
    except KeyError:
        raise ValueError(f"unknown head {head!r}; known: {', '.join(HEADS)}") from None
    return cls(**kwargs)
