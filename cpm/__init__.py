"""cpm: Convolutional Pose Machines (Wei, Ramakrishna, Kanade, Sheikh, CVPR 2016) in PyTorch."""

__version__ = "0.1.0"
