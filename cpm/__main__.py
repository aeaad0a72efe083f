import sys

from cpm.cli import main

sys.exit(main())
