"""The benchmark of kafka-ws-trio against a real broker; ``scripts/bench`` runs it (see docs/BENCHMARKS.md).

Three roles, each in processes of its own (``bench/__main__.py`` picks one):
the orchestrator, the proxy under test, and the load clients. By concern:

* ``cli``: flags, the run, cleanup; ``broker``: the bench's own Kafka;
  ``meta``: which package and machine were measured;
* ``context``: what a run shares, and fresh processes on demand;
  ``fetch``, ``fanout``, ``sessions``, ``produce``: the scenarios;
* ``children``: the child-process protocol; ``proxy``: the proxy process and its
  handle; ``probe``: resources sampled from outside;
* ``load``: the session load clients; ``wsclient``: their RFC 6455 client;
  ``direct``: kafka-python, confluent-kafka, the paced producer and the direct
  kafka-python producer;
* ``targets``: the targets and verdicts; ``report``: the table and the JSON;
  ``plan``: the plans, constants and small statistics.

Nothing is imported here, so that the proxy process can choose which tree's
``kafka_ws_trio`` it imports (``--proxy-package``).
"""
