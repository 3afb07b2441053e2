"""A broken or unknown detector (or one no stage would run) stops the worker at start, by name — before it
touches Kafka."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


def install_fake_detector(site, module_source: str, name: str = "broken") -> None:
    """A distribution on ``site`` whose entry point registers ``fakedet:Det`` as detector ``name``."""
    (site / "fakedet.py").write_text(textwrap.dedent(module_source))
    info = site / "fakedet-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakedet\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[gridwatch.detectors]\n{name} = fakedet:Det\n")


def run_worker(site, **env):
    full = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
            # a port nothing listens on: the start must fail before any connection is tried
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", **env}
    return subprocess.run([sys.executable, "-m", "gridwatch.cli", "worker"], env=full, capture_output=True,
                          text=True, timeout=120)


def test_a_detector_that_breaks_the_api_fails_the_start_with_its_name(tmp_path):
    install_fake_detector(tmp_path, '''
        from detectors.api import Detector

        class Det(Detector):
            name = "broken"
            detects = "nothing"
            kinds = ("x",)
    ''')  # no docstring
    proc = run_worker(tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "detector 'broken': has no docstring" in proc.stdout


def test_a_detector_that_cannot_be_imported_fails_the_start_with_its_name(tmp_path):
    install_fake_detector(tmp_path, "raise RuntimeError('missing dependency')\n")
    proc = run_worker(tmp_path)
    assert proc.returncode == 2
    assert "detector 'broken': cannot be imported from 'fakedet:Det'" in proc.stdout
    assert "missing dependency" in proc.stdout


def test_an_unknown_detector_name_fails_the_start(tmp_path):
    proc = run_worker(tmp_path, GRIDWATCH_DETECTORS="voltage,no_such_detector")
    assert proc.returncode == 2
    assert "detector 'no_such_detector': not installed" in proc.stdout


def test_a_detector_no_stage_runs_fails_the_start_and_the_listing_naming_the_supported_pairs(tmp_path):
    install_fake_detector(tmp_path, '''
        from detectors.api import Detector

        class Det(Detector):
            """Meter events, which no stage hands to a meter detector."""
            name = "broken"
            detects = "nothing"
            key = "meter"
            input = "events"
            kinds = ("outage",)
    ''')
    proc = run_worker(tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert ("detector 'broken': no stage runs key 'meter' with input 'events'; the stages run meter/readings "
            "(MeterStage") in proc.stdout
    assert "feeder/events (FeederStage" in proc.stdout and "customer/daily (CustomerStage" in proc.stdout
    listing = subprocess.run([sys.executable, "-m", "gridwatch.cli", "detectors", "list"], capture_output=True,
                             text=True, timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                 [str(tmp_path), os.environ.get("PYTHONPATH", "")])})
    assert listing.returncode == 1
    assert "gridwatch detectors list: detector 'broken': no stage runs key 'meter' with input 'events'; the " \
           "stages run meter/readings" in listing.stderr


def test_duck_typed_fit_hooks_fail_the_start(tmp_path):
    install_fake_detector(tmp_path, '''
        from detectors.api import Detector

        class Det(Detector):
            """Fits a model the way detectors did before Fittable."""
            name = "broken"
            detects = "nothing"
            key = "customer"
            input = "daily"
            kinds = ("bill_spike",)

            def fit_request(self, state, ctx):
                return None

            def apply_fit(self, state, result, ctx):
                return state, []
    ''')
    proc = run_worker(tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert ("detector 'broken': defines fit_request, apply_fit but is not a detectors.api.Fittable, so no stage "
            "would call it") in proc.stdout
