"""`python -m mmgen.cli` (e.g. under `accelerate launch -m mmgen.cli train ...`)."""

import sys

from mmgen.cli import main

sys.exit(main())
