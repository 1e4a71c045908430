"""``python -m workers``: one worker process, as ``durable-sessions worker`` runs it."""

from workers.main import main

main()
