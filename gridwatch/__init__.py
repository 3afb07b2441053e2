"""gridwatch: smart-meter readings in, timely customer messages out.

Packages, from the bottom layer up (nothing in the product imports ``devtools``):
- ``gridwatch``  the wire contract, configuration, and the ``gridwatch`` command's entry point, which finds its
                 subcommands through the ``gridwatch.commands`` entry point group (it imports none by name);
- ``detectors``  plain-Python detectors (no Kafka, no Faust);
- ``notifiers``  rendering and delivery of customer messages (no Faust);
- ``streams``    the only package that imports Faust: the worker, topic tooling, webhooks, operator commands;
- ``console``, ``history``  the operations console and the operations history;
- ``devtools``   what a developer runs, never the product: the local Kafka broker, the simulator, the CSV
                 replay, the SMS sandbox, the backtest command and the demo.
"""

__version__ = "0.1.0"
