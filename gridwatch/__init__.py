"""gridwatch: smart-meter readings in, timely customer messages out.

Packages, from the bottom layer up; each imports only those before it (tests/unit/test_import_direction.py):
- ``gridwatch``  the wire contract, configuration, and the ``gridwatch`` command's entry point, which finds its
                 subcommands through the ``gridwatch.commands`` entry point group (it imports none by name);
- ``detectors``  plain-Python detectors, their stages and the event-time clock (no Kafka, no Faust);
- ``notifiers``  rendering and delivery of customer messages (no Faust);
- ``streams``    the only package that imports Faust: the worker, topic tooling, webhooks, operator commands;
- ``history``    the operations history (PostgreSQL);
- ``console``    the operations console;
- ``devtools``   what a developer runs, never the product: the local Kafka broker, the simulator, the CSV
                 replay, the SMS sandbox, the backtest command and the demo.
"""

__version__ = "0.1.0"
