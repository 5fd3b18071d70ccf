"""Runs one Python function, or a class's train() method, inside an image built by fairing.

    python function_shim.py --file /app/train.py --name train [--python-version 3.11]
    python function_shim.py --pickle /app/fn.pkl [--python-version 3.11]

--file imports the file as a module (its directory goes first on sys.path, so its sibling
modules import) and takes NAME from it (dots reach attributes: "Model.fit" is allowed). --pickle
loads a pickle made with cloudpickle (or pickle) by the user; cloudpickle must then be installed
in the image. A function is called with no arguments; a class is instantiated with no arguments
and its train() is called. A truthy return value is printed. An exception exits with status 1
after printing its traceback; a wrong target exits with 2; a Python major.minor different from
--python-version exits with 3 before anything is loaded.
"""

import argparse
import importlib.util
import inspect
import os
import pickle
import sys
import traceback


class TargetError(Exception):
    """The named target is missing or cannot be run: a usage error, not a failure of user code."""


def fail(code, message):
    sys.stderr.write("fairing: " + message + "\n")
    sys.stderr.flush()
    return code


def check_version(want):
    try:
        major, minor = (int(x) for x in want.split(".")[:2])
    except ValueError:
        return fail(2, "--python-version %r is not MAJOR.MINOR" % want)
    have = sys.version_info[:2]
    if have != (major, minor):
        return fail(
            3,
            "this image runs Python %d.%d but the function was declared for Python %d.%d "
            "(--python-version %s): use a base image with Python %d.%d, or change --python-version"
            % (have[0], have[1], major, minor, want, major, minor),
        )
    return 0


def load_file(path, name):
    directory = os.path.dirname(os.path.abspath(path))
    if directory not in sys.path:
        sys.path.insert(0, directory)
    module_name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    # Registered before running it, as an import would, so pickle and dataclasses find it.
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    target = module
    for part in name.split("."):
        if not hasattr(target, part):
            raise TargetError("%s has no %r" % (path, name))
        target = getattr(target, part)
    return target


def load_pickle(path):
    # By-reference pickles name modules that were importable where they were made: look for
    # them in the working directory, where fairing puts the inputs.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    with open(path, "rb") as f:
        return pickle.load(f)


def call(target, label):
    if inspect.isclass(target):
        train = getattr(target, "train", None)
        if not callable(train):
            raise TargetError("%s is a class without a train() method" % label)
        return target().train()
    if callable(target):
        return target()
    raise TargetError("%s is a %s, not a function or a class" % (label, type(target).__name__))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fairing-function-shim", description=__doc__.split("\n")[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--file", help="Python file defining the function or class")
    src.add_argument("--pickle", help="cloudpickle file holding the function or class")
    parser.add_argument("--name", help="function or class name in --file")
    parser.add_argument("--python-version", help="required Python MAJOR.MINOR")
    args = parser.parse_args(argv)
    if args.file and not args.name:
        parser.error("--file needs --name")
    if args.pickle and args.name:
        parser.error("--name goes with --file, not --pickle")

    if args.python_version:
        code = check_version(args.python_version)
        if code:
            return code

    label = "%s:%s" % (args.file, args.name) if args.file else args.pickle
    try:
        target = load_file(args.file, args.name) if args.file else load_pickle(args.pickle)
    except TargetError as e:
        return fail(2, str(e))
    except ModuleNotFoundError as e:
        if args.pickle and (e.name or "").split(".")[0] == "cloudpickle":
            return fail(
                1,
                "%s needs cloudpickle to load: install cloudpickle in the image "
                "(requirements.txt and the BuildKit path, or a base that has it), "
                "or pass the function as --function FILE.py:NAME instead" % args.pickle,
            )
        traceback.print_exc()
        return fail(1, "loading %s failed (traceback above)" % label)
    except Exception:
        traceback.print_exc()
        return fail(1, "loading %s failed (traceback above)" % label)

    try:
        result = call(target, label)
    except TargetError as e:
        return fail(2, str(e))
    except Exception as e:
        traceback.print_exc()
        return fail(1, "%s raised %s (traceback above)" % (label, type(e).__name__))
    if result:
        print(result)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
