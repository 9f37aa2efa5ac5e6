"""CLI sub-commands, one module each: ``add_parser(subparsers)`` and ``run(args) -> int``.

Command modules are thin: they parse arguments and call the library; no logic lives here.
"""
