"""``python -m durable_sessions`` runs the command line."""

from durable_sessions.cli import main

main()
