"""fairing inside an image built by fairing: a no-op stand-in for the Fairing SDK (see _fairing_stub)."""

from _fairing_stub import RuntimeConfig, __version__, config, module_getattr

__getattr__ = module_getattr(__name__)
