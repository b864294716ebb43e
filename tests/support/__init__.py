"""What tests and benchmarks share: processes, environments, waits and row reads.

Benchmarks import it as ``tests.support`` (they put the repository root on ``sys.path``).
"""
