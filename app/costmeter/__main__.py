"""Allow ``python -m costmeter``."""

from costmeter.cli.main import main

raise SystemExit(main())
