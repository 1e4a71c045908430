"""``python -m workers``: the same as ``durable-sessions worker``."""

import sys

from durable_sessions.cli import main

main(["worker", *sys.argv[1:]])
