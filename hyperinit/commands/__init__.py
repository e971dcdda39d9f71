"""The ``hyperinit`` subcommands, one module each: ``add_parser`` registers a command on the
CLI's subparsers, ``run`` carries it out (``localize``'s lives in :mod:`hyperinit.localize.cli`)."""
