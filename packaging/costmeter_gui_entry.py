"""The windowed program of the Windows and macOS bundles: opens the desktop app.

Extra arguments are those of ``costmeter gui`` (``--simulate 2``, ``--page runs``).
"""

import sys

from costmeter.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["gui", *sys.argv[1:]]))
