"""Pure byte formats (cpio, ar/deb, ELF, ld.so.cache): no configuration, no network."""
