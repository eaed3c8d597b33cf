"""``python -m maskrcnn`` runs the command line."""

from maskrcnn.cli import main

raise SystemExit(main())
