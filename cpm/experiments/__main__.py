"""``python -m cpm.experiments TARGET``: the experiment grids (`cpm.experiments.grids`)."""

import sys

from cpm.experiments.grids import main

sys.exit(main())
