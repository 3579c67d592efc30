"""The bundle's program: the same as the ``costmeter`` console script of a pip install.

The bundle leaves torch out (about 700 MB). The commands that need it already say
"needs torch: pip install 'costmeter[torch]'", which a bundle user cannot do to the bundle itself:
this adds the way that works for them.
"""

import importlib.util
import sys

from costmeter.cli.main import main

TORCH_COMMANDS = ("compress", "example")
BUNDLE_TORCH_HINT = (
    "costmeter: this packaged Costmeter leaves torch out (it is about 700 MB). For `costmeter "
    "{command}`, install Costmeter with pip in a Python 3.11+ environment instead: "
    "python3 -m venv ~/.venvs/costmeter && ~/.venvs/costmeter/bin/pip install "
    "'costmeter[gui,torch]', then run ~/.venvs/costmeter/bin/costmeter {command} ..."
)


def run() -> int:
    code = main()
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if code != 0 and command in TORCH_COMMANDS and importlib.util.find_spec("torch") is None:
        print(BUNDLE_TORCH_HINT.format(command=command), file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(run())
