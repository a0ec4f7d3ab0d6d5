"""``python -m prospect_sim info FILE`` (.py or .h5) / ``run FILE --MODE``: see :func:`prospect_sim.cli.tool_main`."""

import sys

from .cli import tool_main

if __name__ == "__main__":
    sys.exit(tool_main())
