"""``python -m actorim``: the same as the ``actorim`` command."""

from actorim.cli import main

raise SystemExit(main())
