"""``python -m jobclient``: the same as ``jobctl``."""

from jobclient.cli import main

raise SystemExit(main())
