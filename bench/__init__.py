"""The benchmark: a load generator and a runner (see docs/performance.md)."""
