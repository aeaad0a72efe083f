"""Networks. ``HEADS`` maps the ``model.head`` config value to the class that builds it; ``BACKBONES``
(in `cpm.models.backbones`) maps ``model.backbone`` to the image feature extractor a head sits on.

Every head returns a list of per-stage outputs: belief maps (B, K[+1], h, w) for ``heatmap``, normalised
coordinates (B, K, 2) for ``regression`` and ``integral`` (see `cpm.models.heads`), confidence maps and part affinity
fields (B, K[+1] + 2L, h, w) of every person for ``paf`` (`cpm.models.paf`)."""

from cpm.config import Head, ModelConfig, check_names
from cpm.models.backbones import BACKBONES
from cpm.models.heads import IntegralHead, RegressionHead, set_trainable_stages
from cpm.models.paf import PartAffinityFields
from cpm.models.pose_machine import ConvolutionalPoseMachine

HEADS = {"heatmap": ConvolutionalPoseMachine, "regression": RegressionHead, "integral": IntegralHead,
         "paf": PartAffinityFields}
check_names(HEADS, Head, "model.head")

# The heads whose outputs are coordinates (decoded by cpm.targets.codecs.RegressionCodec), not belief maps.
COORDINATE_HEADS = ("regression", "integral")

__all__ = ["BACKBONES", "COORDINATE_HEADS", "HEADS", "ConvolutionalPoseMachine", "IntegralHead", "PartAffinityFields",
           "RegressionHead", "build_model", "set_trainable_stages"]


def build_model(config: ModelConfig, num_joints: int, *, background: bool = True, center_pool: bool = False,
                num_limbs: int | None = None):
    """The network of a ``[model]`` section (`cpm.config.ModelConfig`): the class of ``config.head`` built from the
    config, with K = ``num_joints`` (from the data's skeleton), a background belief channel or not and the centre
    map at input resolution or not (``targets.background``, ``targets.center_pool``); the paf head also takes L =
    ``num_limbs`` (the skeleton's limbs), which the other heads do not read."""
    try:
        cls = HEADS[config.head]
    except KeyError:
        raise ValueError(f"unknown head {config.head!r}; known: {', '.join(HEADS)}") from None
    if config.head == "paf":
        if num_limbs is None:
            raise ValueError("model.head = 'paf': build_model needs num_limbs (the skeleton's limbs)")
        return cls(config, num_joints, num_limbs=num_limbs, background=background, center_pool=center_pool)
    return cls(config, num_joints, background=background, center_pool=center_pool)
