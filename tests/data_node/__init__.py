"""Data-node tests: posting, release, status, model delivery, and one real-process run."""
