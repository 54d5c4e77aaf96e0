"""Package sources: archive index, signature verification, resolution, lock, fetch."""
