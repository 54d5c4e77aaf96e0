"""Outputs composed from sources, tree and formats: the initrd and its manifest."""
