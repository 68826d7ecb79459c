"""`python -m kyklos` is the `kyklos` command."""

from kyklos.cli import main

raise SystemExit(main())
