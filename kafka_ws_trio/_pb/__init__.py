"""Code generated from ``schema/pubsub.proto`` by ``scripts/gen-proto``; do not edit.

Lint skips these files and mypy ignores their errors. Only ``kafka_ws_trio._protocol``
imports them.
"""
