"""Pure logic of the local broker and the topic admin: no broker, no java, no network beyond loopback."""

from __future__ import annotations

import argparse
import dataclasses
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gridwatch.config import COMPACTED_TOPICS, CONTRACT_TOPICS, INTERNAL_TOPICS, Settings
from devtools import broker
from streams import topics
from tests.ci import unavailable


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_server_properties_bind_loopback_only(tmp_path):
    props = _props(broker.server_properties(client_port=9092, controller_port=9093, data_dir=tmp_path))
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert "0.0.0.0" not in props["listeners"] and "localhost" not in props["listeners"]


def test_server_properties_single_node_settings(tmp_path):
    props = _props(broker.server_properties(client_port=9092, controller_port=9093, data_dir=tmp_path))
    assert props["process.roles"] == "broker,controller"
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor",
                "transaction.state.log.min.isr", "share.coordinator.state.topic.replication.factor"):
        assert props[key] == "1", key
    assert props["auto.create.topics.enable"] == "false"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["log.cleaner.dedupe.buffer.size"] == "2097152"
    assert int(props["offsets.topic.num.partitions"]) < 50


def test_data_dir_is_under_the_run_dir(tmp_path):
    paths = broker.LocalBroker.for_settings(Settings(run_dir=tmp_path / ".run"))
    props = _props(broker.server_properties(client_port=9092, controller_port=9093, data_dir=paths.data_dir))
    log_dir = Path(props["log.dirs"])
    assert log_dir.is_relative_to((tmp_path / ".run").resolve())
    for path in (paths.server_properties, paths.log_file, paths.pid_file, paths.log4j_config):
        assert path.is_relative_to((tmp_path / ".run" / "kafka").resolve())


def test_controller_port_defaults_to_client_port_plus_one(monkeypatch):
    monkeypatch.delenv("GRIDWATCH_KAFKA_CONTROLLER_PORT", raising=False)
    assert broker.broker_ports(Settings(bootstrap_servers="127.0.0.1:29092")) == (29092, 29093)
    monkeypatch.setenv("GRIDWATCH_KAFKA_CONTROLLER_PORT", "39000")
    assert broker.broker_ports(Settings(bootstrap_servers="localhost:29092")) == (29092, 39000)


def test_a_remote_bootstrap_is_not_started_locally():
    with pytest.raises(broker.BrokerError, match="not at this machine"):
        broker.broker_ports(Settings(bootstrap_servers="kafka:9092"))


@pytest.mark.parametrize("bootstrap, expected", [
    ("127.0.0.1:9092", ("127.0.0.1", 9092)),
    (" localhost:19092 , other:9092", ("localhost", 19092)),
    ("kafka", ("kafka", 9092)),
    ("[::1]:9094", ("::1", 9094)),
])
def test_parse_bootstrap(bootstrap, expected):
    assert broker.parse_bootstrap(bootstrap) == expected


def test_cluster_id_is_kafka_shaped():
    for _ in range(200):
        cid = broker._new_cluster_id()
        assert len(cid) == 22 and "=" not in cid and not cid.startswith("-")


def test_missing_maven_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # empty cache: the jars must be resolved
    monkeypatch.setattr(broker.shutil, "which", lambda tool: None)
    with pytest.raises(broker.BrokerError, match="apt-get install openjdk-17-jre-headless maven"):
        broker.ensure_jars(quiet=True)


def test_is_reachable_needs_a_kafka_answer_not_just_an_open_port():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert not broker.is_reachable(f"127.0.0.1:{port}", timeout=0.3)  # accepts, never answers
    assert not broker.is_reachable(f"127.0.0.1:{port}", timeout=0.3)  # closed


def test_stop_never_touches_a_process_it_did_not_start(tmp_path):
    settings = Settings(run_dir=tmp_path)
    paths = broker.LocalBroker.for_settings(settings)
    paths.home.mkdir(parents=True)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        paths.pid_file.write_text(f"{stranger.pid}\n")
        assert broker.stop(settings) is False
        assert stranger.poll() is None, "stop() killed a process that is not our broker"
        assert not paths.pid_file.exists(), "a stale pid file should be cleared"
        assert broker.status(dataclasses.replace(settings, bootstrap_servers="127.0.0.1:1"))["managed_pid"] is None
    finally:
        stranger.kill()
        stranger.wait()


def test_topic_specs_cover_every_topic_with_configured_partitions():
    settings = Settings(partitions=6)
    specs = topics.topic_specs(settings)
    faust = topics.faust_topics(settings)
    assert set(specs) == set(CONTRACT_TOPICS + INTERNAL_TOPICS) | set(faust)
    for name, spec in specs.items():
        assert spec["replication_factor"] == 1
        if name in faust:
            continue
        assert spec["num_partitions"] == 6
        expected = {"cleanup.policy": "compact"} if name in COMPACTED_TOPICS else {}
        assert spec["configs"] == expected, name


def test_faust_topics_are_a_compacted_changelog_per_table_and_the_leader_topic():
    from gridwatch.config import TABLES

    faust = topics.faust_topics(Settings(partitions=6, topic_prefix="p."))
    assert set(faust) == {f"p.gridwatch-{t}-changelog" for t in TABLES} | {"p.gridwatch-__assignor-__leader"}
    assert faust["p.gridwatch-contacts-changelog"] == {"num_partitions": 6, "replication_factor": 1,
                                                       "configs": {"cleanup.policy": "compact"}}
    assert faust["p.gridwatch-__assignor-__leader"]["num_partitions"] == 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gridwatch")
    sub = parser.add_subparsers(dest="command", required=True)
    broker.register(sub)
    topics.register(sub)
    return parser


@pytest.mark.parametrize("argv", [["kafka", "--help"], ["kafka", "start", "--help"], ["kafka", "stop", "--help"],
                                  ["kafka", "status", "--help"], ["topics", "--help"],
                                  ["topics", "create", "--help"], ["topics", "verify", "--help"]])
def test_every_subcommand_has_help(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args(argv)
    assert exit_info.value.code == 0
    assert "usage: gridwatch" in capsys.readouterr().out


def test_subcommands_set_func():
    parser = _parser()
    for argv in (["kafka", "start"], ["kafka", "stop"], ["kafka", "status", "--json"],
                 ["topics", "create"], ["topics", "verify"]):
        assert callable(parser.parse_args(argv).func)


def test_cli_errors_are_one_line_exit_1(monkeypatch, capsys):
    def boom(*args, **kwargs):
        raise broker.BrokerError("`java` is not on PATH")
    monkeypatch.setattr(broker, "start", boom)
    args = _parser().parse_args(["kafka", "start"])
    assert args.func(args) == 1
    err = capsys.readouterr().err
    assert err.strip() == "error: `java` is not on PATH"


def test_docker_compose_file_validates():
    """The compose stack cannot run here (no Docker engine), but its file must stay valid."""
    import shutil

    compose = shutil.which("docker-compose")
    if compose is None:
        unavailable("docker-compose is not installed (Debian: apt-get install docker-compose)")
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run([compose, "-f", str(repo / "docker-compose.yml"), "config", "--services"],
                          capture_output=True, text=True, timeout=60, cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert set(proc.stdout.split()) == {"kafka", "topics", "worker", "sandbox", "simulator", "webhooks",
                                      "postgres", "projector"}
