"""gridwatch: smart-meter readings in, timely customer messages out.

Packages:
- ``gridwatch``  the wire contract, configuration and the ``gridwatch`` command;
- ``detectors``  plain-Python detectors (no Kafka, no Faust);
- ``notifiers``  rendering and delivery of customer messages (no Faust);
- ``streams``    the only package that imports Faust: the worker, the broker and topic tooling, the simulator.
"""

__version__ = "0.1.0"
