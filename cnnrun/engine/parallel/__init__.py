"""Data parallelism: a batch cut into shares over worker processes (replicas), the pipes
and shared-memory blocks they talk through, and the worker's own loop."""
