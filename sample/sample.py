"""Sample images from prompts with a text-to-image checkpoint (the `mmgen sample` command as
a script):

    python sample/sample.py "a big blue star in the middle" -n 8 --steps 20 --seed 0 --out grid.png
"""

import sys

from mmgen.cli import main

if __name__ == "__main__":
    sys.exit(main(["sample", *sys.argv[1:]]))
