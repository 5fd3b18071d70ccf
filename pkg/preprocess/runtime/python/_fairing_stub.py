"""The no-op stand-in for the Kubeflow Fairing SDK behind the ``fairing`` and ``kubeflow.fairing``
packages that fairing puts in every image it builds.

The code in the image is the code that, on a workstation, called the SDK to build and launch
itself. Inside the image those calls must do nothing, as the SDK's own runtime mode did when
FAIRING_RUNTIME was set: config.set_*() only record, config.run() builds and deploys nothing,
config.fn(f) returns f. Any other name under ``fairing`` or ``kubeflow.fairing`` (TrainJob,
builders, mutators, utils, ...) resolves to a placeholder that accepts every call and attribute,
so imports such as ``from kubeflow.fairing.kubernetes.utils import mounting_pvc`` keep working
without the SDK and its dependencies installed.
"""

import importlib.abc
import importlib.machinery
import sys

__version__ = "0+fairing.runtime.stub"


class _Anything(object):
    """A placeholder: calling it, or reading any attribute of it, gives another placeholder."""

    def __init__(self, name):
        object.__setattr__(self, "_name", name)

    def __call__(self, *args, **kwargs):
        return _Anything(self._name + "()")

    def __getattr__(self, attr):
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        return _Anything(self._name + "." + attr)

    def __setattr__(self, attr, value):
        pass

    def __iter__(self):
        return iter(())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __mro_entries__(self, bases):
        # "class MyBuilder(fairing.builders.base.BaseBuilder)" still defines a class.
        return (object,)

    def __repr__(self):
        return "<fairing runtime no-op %s>" % self._name


class RuntimeConfig(object):
    """fairing.config inside an image: records names, builds and deploys nothing."""

    def __init__(self):
        self._names = {}

    def set_preprocessor(self, name=None, **kwargs):
        self._names["preprocessor"] = name

    def set_builder(self, name="append", **kwargs):
        self._names["builder"] = name

    def set_deployer(self, name="job", **kwargs):
        self._names["deployer"] = name

    def get_preprocessor(self):
        return _Anything("preprocessor")

    def get_builder(self, preprocessor=None):
        return _Anything("builder")

    def get_deployer(self):
        return _Anything("deployer")

    def reset(self):
        self._names = {}

    def run(self):
        # The SDK's run() returned (preprocessor, builder, deployer); keep unpacking working.
        return (_Anything("preprocessor"), _Anything("builder"), _Anything("deployer"))

    def deploy(self, pod_spec=None):
        return _Anything("deployer")

    def fn(self, func):
        return func

    def __getattr__(self, attr):
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        return _Anything("config." + attr)


config = RuntimeConfig()


def module_getattr(module_name):
    """A PEP 562 module __getattr__: "from fairing import TrainJob" and other SDK names."""

    def getattr_(name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return _Anything(module_name + "." + name)

    return getattr_


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes every submodule of fairing / kubeflow.fairing importable as a placeholder module."""

    prefixes = ("fairing.", "kubeflow.fairing.")

    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith(self.prefixes):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.__getattr__ = module_getattr(module.__name__)
        module.__path__ = []


if not any(type(f).__name__ == "_StubFinder" for f in sys.meta_path):
    # Last, so that a real module found on the path always wins.
    sys.meta_path.append(_StubFinder())
