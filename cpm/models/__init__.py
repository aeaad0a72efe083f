"""Networks. ``HEADS`` maps the ``model.head`` config value to the class that builds it; ``BACKBONES``
(in `cpm.models.backbones`) maps ``model.backbone`` to the image feature extractor a head sits on.

Every head returns a list of per-stage outputs: belief maps (B, K[+1], h, w) for ``heatmap``, normalised
coordinates (B, K, 2) for ``regression`` and ``integral`` (see `cpm.models.heads`)."""

from cpm.config import Head, ModelConfig, check_names
from cpm.models.backbones import BACKBONES
from cpm.models.heads import IntegralHead, RegressionHead, set_trainable_stages
from cpm.models.pose_machine import ConvolutionalPoseMachine

HEADS = {"heatmap": ConvolutionalPoseMachine, "regression": RegressionHead, "integral": IntegralHead}
check_names(HEADS, Head, "model.head")

# The heads whose outputs are coordinates (decoded by cpm.targets.codecs.RegressionCodec), not belief maps.
COORDINATE_HEADS = ("regression", "integral")

__all__ = ["BACKBONES", "COORDINATE_HEADS", "HEADS", "ConvolutionalPoseMachine", "IntegralHead", "RegressionHead",
           "build_model", "set_trainable_stages"]


def build_model(config: ModelConfig, num_joints: int, *, background: bool = True, center_pool: bool = False):
    """The network of a ``[model]`` section (`cpm.config.ModelConfig`): the class of ``config.head`` built from the
    config, with K = ``num_joints`` (from the data's skeleton), a background belief channel or not and the centre
    map at input resolution or not (``targets.background``, ``targets.center_pool``)."""
    try:
        cls = HEADS[config.head]
    except KeyError:
        raise ValueError(f"unknown head {config.head!r}; known: {', '.join(HEADS)}") from None
    return cls(config, num_joints, background=background, center_pool=center_pool)
