"""``python -m mobilesam`` runs the command-line interface."""

from .cli import entry

entry()
