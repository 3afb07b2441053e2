"""Development tools, on top of every product package; nothing in the product imports them.

``devtools.broker`` (``gridwatch kafka``: a local single-node Kafka from Maven Central jars),
``devtools.simulator`` (``gridwatch simulate``: a deterministic synthetic utility with fault injection),
``devtools.replay`` (``gridwatch replay``: recorded meter data from CSV), ``devtools.sandbox``
(``gridwatch sandbox``: a local stand-in for Twilio's Messages API and an SMTP sink), ``devtools.backtest``
(``gridwatch backtest``: the detectors over simulated or recorded labelled data) and ``devtools.demo``
(``gridwatch demo``: all of it together). The defaults the product shares with them (the sandbox's address and
public credentials) live in :mod:`gridwatch.config`.
"""
