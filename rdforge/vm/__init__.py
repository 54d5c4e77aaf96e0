"""The boot harness: qemu, test root file systems, console assertions."""
