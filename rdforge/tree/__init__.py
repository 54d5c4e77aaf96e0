"""The staging tree: unpack packages, declarative fix-ups, prune, kernel modules, checks."""
