"""`python -m mmgen`, the same as `mmgen` and `python -m mmgen.cli` (e.g. under
`accelerate launch -m mmgen train ...`)."""

import sys

from mmgen.cli import main

sys.exit(main())
