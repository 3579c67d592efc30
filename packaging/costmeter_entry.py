"""The bundle's program: the same as the ``costmeter`` console script of a pip install.

The bundle leaves torch out (about 700 MB); in it, the commands and the dialog that need torch say
how to get a Costmeter that has it (``costmeter.compress.errors.BUNDLE_TORCH_HINT``).
"""

import sys

from costmeter.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
