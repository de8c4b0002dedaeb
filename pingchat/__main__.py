"""``python -m pingchat`` is the ``pingchat`` command."""

import sys

from pingchat.cli import main

sys.exit(main())
