"""Sub-commands of ``cbm-etl``; each module exposes ``add_parser(subparsers)``."""
