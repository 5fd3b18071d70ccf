"""kubeflow.fairing inside an image built by fairing: a no-op stand-in for the SDK (see _fairing_stub).

There is deliberately no kubeflow/__init__.py: ``kubeflow`` stays a namespace package, so other
kubeflow.* packages installed in the image (kubeflow.training, kubeflow.katib, ...) still import.
"""

from _fairing_stub import RuntimeConfig, __version__, config, module_getattr

__getattr__ = module_getattr(__name__)
