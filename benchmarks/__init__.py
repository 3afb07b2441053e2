"""Benchmarks: ``python -m benchmarks.detect_path`` (CPU only) and ``python -m benchmarks.worker_throughput``
(end to end on a real broker). See ``benchmarks/README.md``."""
