"""cpm: Convolutional Pose Machines (Wei, Ramakrishna, Kanade, Sheikh, CVPR 2016) in PyTorch.

The Python API::

    from cpm import load_predictor

    predictor = load_predictor("runs/default/best.pt", "cpu")
    result = predictor.predict_files(["frame.png"], boxes=[(40, 20, 90, 180)])
    for joint in result.joints(0):
        print(joint["name"], joint["x"], joint["y"], joint["confidence"])

``load_predictor``, ``Predictor`` and ``Prediction`` come from `cpm.inference.predictor`; ``load_config`` from
`cpm.config`. They are imported on first use, so ``import cpm`` (and reading a config) does not import torch.
"""

__version__ = "0.2.0"

_API = {
    "load_predictor": "cpm.inference.predictor",
    "Predictor": "cpm.inference.predictor",
    "Prediction": "cpm.inference.predictor",
    "load_config": "cpm.config",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'cpm' has no attribute {name!r}")
