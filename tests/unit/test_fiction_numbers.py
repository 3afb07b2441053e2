"""The simulator and the demo: fiction-only phone numbers, no real Twilio and no contract topics by accident."""

from __future__ import annotations

import re

import pytest

from gridwatch.cli import main
from devtools.simulator import SimConfig, Simulator, fiction_phone

FICTION = re.compile(r"^(\+447700900\d{3}"          # Ofcom drama range, 07700 900000-900999
                     r"|\+3363998\d{4}"              # ARCEP fiction range, 06 39 98 00 00-99 99
                     r"|\+1[2-9](?!11)(?!9)\d\d55501\d\d)$")  # NANPA 555-0100..0199 (no N11 / N9X area code)
TWILIO = {"TWILIO_ACCOUNT_SID": "AC" + "7" * 32, "TWILIO_AUTH_TOKEN": "real-account-token-0123456789",
          "TWILIO_FROM_NUMBER": "+15017122661"}


def test_every_simulated_customer_has_its_own_fiction_number():
    sim = Simulator(SimConfig(seed=3, hours=1, feeders=8, transformers_per_feeder=10, meters_per_transformer=30,
                              regions="CN,EU,US"))
    phones = [c["phone"] for c in sim.customers()]
    assert len(phones) == 2400 and len(set(phones)) == len(phones)
    assert [p for p in phones if not FICTION.match(p)] == []
    assert not any(p.startswith("+86") for p in phones)
    cn = [c["phone"] for c in sim.customers() if c["timezone"] == "Asia/Shanghai"]
    gb = [c["phone"] for c in sim.customers() if c["timezone"] == "Europe/London" and int(c["customer_id"][1:]) < 1000]
    assert cn and all(p.startswith("+1") for p in cn) and gb and all(p.startswith("+447700900") for p in gb)


def test_fiction_numbers_are_unique_until_the_ranges_run_out():
    numbers = {fiction_phone(r, n) for r in ("CN", "US") for n in range(1, 71_100)}
    assert len(numbers) == 71_099 and all(FICTION.match(p) for p in numbers)
    assert fiction_phone("GB", 999) == "+447700900999" and FICTION.match(fiction_phone("GB", 1000))
    with pytest.raises(ValueError, match="fiction"):
        fiction_phone("US", 10_000_000)


def _clean(monkeypatch, **env):
    """No prefix, no Twilio; the topics records would be published to are recorded instead."""
    import devtools.simulator as simulator
    for var in ("GRIDWATCH_TOPIC_PREFIX", "GRIDWATCH_SANDBOX_URL", *TWILIO, "TWILIO_MESSAGING_SERVICE_SID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")  # nothing may reach a broker here
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    topics: set[str] = set()

    class Producer:  # what make_producer would return, recording where records go
        def send(self, topic, key=None, value=None):
            topics.add(topic)

        def flush(self, timeout=None):
            pass

        def close(self, timeout=None):
            pass

    monkeypatch.setattr(simulator, "make_producer", lambda bootstrap=None: Producer())
    return topics


def test_simulate_needs_an_explicit_topic_choice(monkeypatch, capsys):
    calls = _clean(monkeypatch)
    assert main(["simulate", "--hours", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--topic-prefix" in err and "--contract-topics" in err and calls == set()
    with pytest.raises(SystemExit):  # one or the other
        main(["simulate", "--topic-prefix", "x.", "--contract-topics"])


@pytest.mark.parametrize("choice, prefix", [(["--topic-prefix", "sim."], "sim."), (["--contract-topics"], "")])
def test_with_a_topic_choice_simulate_publishes_there(monkeypatch, choice, prefix):
    calls = _clean(monkeypatch)
    assert main(["simulate", "--hours", "1", "--no-progress", *choice]) == 0
    assert calls == {prefix + "customers", prefix + "meter.readings"}  # a clean hour has no meter events


def test_the_environment_prefix_is_a_topic_choice_and_out_needs_none(monkeypatch, tmp_path):
    calls = _clean(monkeypatch, GRIDWATCH_TOPIC_PREFIX="env.")
    assert main(["simulate", "--hours", "1", "--no-progress"]) == 0 and "env.meter.readings" in calls
    calls = _clean(monkeypatch)
    assert main(["simulate", "--hours", "1", "--no-progress", "--out", str(tmp_path / "o.jsonl")]) == 0


def test_simulate_and_demo_refuse_real_twilio_without_the_flag(monkeypatch, capsys):
    calls = _clean(monkeypatch, **TWILIO)
    assert main(["simulate", "--hours", "1", "--no-progress", "--topic-prefix", "sim."]) == 2
    assert "--real-twilio" in capsys.readouterr().err and calls == set()
    assert main(["simulate", "--hours", "1", "--no-progress", "--topic-prefix", "sim.", "--real-twilio"]) == 0
    capsys.readouterr()
    assert main(["demo", "--duration", "1", "--run-dir", "/nonexistent/never-created"]) == 2
    err = capsys.readouterr().err
    assert "--real-twilio" in err and TWILIO["TWILIO_AUTH_TOKEN"] not in err
