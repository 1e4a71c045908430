"""The benchmark harness: raw baselines and durable-sessions end to end, in one run.

Run it with ``python -m benchmarks [--quick] [--runs N] [--out DIR]`` (``make bench``,
``make bench-quick``). Every scenario checks its own results for loss, duplicates and order
before anything is reported.
"""
