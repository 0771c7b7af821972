"""Defer the heavy packages that Avalanche 0.6.0 imports eagerly but a run never uses.

``import avalanche`` runs every subpackage's ``__init__``, which imports, at module level,
qpsolvers (and through it jax, jaxopt, cvxopt, osqp) for GEM, wandb for the confusion-matrix
metric, torchmetrics (and ``scipy.signal``) for top-k accuracy, matplotlib for figure metrics,
and ``torchvision.models``/``torchvision.ops`` (and ``torch._dynamo``, sympy, triton) for model
zoo helpers. That is most of the start-up time of a run that uses none of them.

:func:`install` puts a finder on ``sys.meta_path`` that hands out the modules in
:data:`DEFERRED` unexecuted: their body runs, unchanged and on the same module object, at the
first access to an attribute that the module has to compute. So anything that really uses
them (a collapsebench plugin building ``avalanche.training.GEM``, a W&B logger, a torchvision
model) gets the real module, just later. The run cannot see a difference, because nothing it
executes reads these modules: the accuracy matrix is the same with and without the finder
(tested), and ``COLLAPSEBENCH_EAGER_IMPORTS=1`` switches it off.

A few Avalanche modules take a name out of a deferred module at their own import
(``from torchmetrics.functional import accuracy``). Only those module-level imports inside
``avalanche.*``, and only the names listed in :data:`DEFERRED`, receive a stand-in: a function
that forwards each call, or a class whose ``isinstance`` is false while the real module has
never run (no instance can exist yet) and delegates afterwards. Everyone else gets the real
attribute. ``tests/test_startup.py`` checks that the table matches what the installed Avalanche
and torchvision import, so an upgrade that adds an import fails a test instead of slowing down.

``COLLAPSEBENCH_TRACE_IMPORTS=1`` prints where each deferred module finally ran.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import os
import sys
import threading
import traceback
import types

EAGER_ENV = "COLLAPSEBENCH_EAGER_IMPORTS"
TRACE_ENV = "COLLAPSEBENCH_TRACE_IMPORTS"
FUNCTION, CLASS, DYNAMO_DISABLE, DYNAMO_NOOP = "function", "class", "dynamo-disable", "dynamo-noop"

#: Module -> {name: kind} of what module-level code in ``avalanche.*`` takes out of it.
DEFERRED: dict[str, dict[str, str]] = {
    "qpsolvers": {},
    "wandb": {},
    "GPUtil": {},
    "gdown": {},
    "torchmetrics": {},
    "torchmetrics.functional": {"accuracy": FUNCTION},
    "matplotlib": {},
    "matplotlib.pyplot": {"Figure": CLASS, "subplots": FUNCTION},
    "matplotlib.figure": {"Figure": CLASS},
    "matplotlib.axes": {"Axes": CLASS},
    "matplotlib.transforms": {},
    # torchvision's own __init__ imports these two; Avalanche takes two helpers from them.
    "torchvision.models": {"mobilenet_v2": FUNCTION},
    "torchvision.models.feature_extraction": {"get_graph_node_names": FUNCTION,
                                               "create_feature_extractor": FUNCTION},
    "torchvision.ops": {},
    # Not Avalanche's: torch.optim asks torch._dynamo (5-10 s of sympy and triton here) to stay
    # out of add_param_group and to break its graph around each step. Until dynamo has run there
    # is no hook to keep out and no graph to break.
    "torch._dynamo": {"disable": DYNAMO_DISABLE, "graph_break": DYNAMO_NOOP},
}
#: Kind -> whose reads get a stand-in: module-level code of a package, or any code of one module.
_TAKERS = {FUNCTION: ("avalanche.", True), CLASS: ("avalanche.", True), DYNAMO_DISABLE: ("torch._compile", False),
           DYNAMO_NOOP: ("torch.optim.", False)}
#: Attributes the import system reads from a module it has handed out; reading them runs nothing.
_PASSIVE = frozenset({"__spec__", "__name__", "__loader__", "__package__", "__path__", "__file__",
                      "__cached__", "__class__"})
_BOOTSTRAP = ("<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>")
_lock = threading.RLock()
_stubs: dict[tuple[str, str], object] = {}
#: Deferred modules whose body has run, in order (what a test asserts about).
executed: list[str] = []


def enabled() -> bool:
    return os.environ.get(EAGER_ENV, "") in ("", "0")


def install() -> bool:
    """Put the finder first on ``sys.meta_path``, once; False when switched off or too late.

    Too late means a deferred module has been imported already: it stays as it is.
    """
    if not enabled():
        return False
    with _lock:
        if any(isinstance(f, _Finder) for f in sys.meta_path):
            return True
        sys.meta_path.insert(0, _Finder())
    return True


def is_deferred(module: object) -> bool:
    """True while ``module`` is a handed-out module whose body has not run."""
    return type(module) is _DeferredModule


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in DEFERRED:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            return spec  # only plain Python modules can wait; anything else loads now
        spec.loader = _DeferringLoader(spec.loader)
        return spec


class _DeferringLoader(importlib.abc.Loader):
    def __init__(self, real):
        self.real = real

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.__class__ = _DeferredModule


class _DeferredModule(types.ModuleType):
    def __getattribute__(self, attr):
        if attr in _PASSIVE:
            if attr == "__path__" and _imports_undeferred_child(sys._getframe(1)):
                _execute(self)  # a child's body expects its parent's to have run
            return object.__getattribute__(self, attr)
        namespace = object.__getattribute__(self, "__dict__")
        name = namespace["__name__"]
        value = namespace.get(attr)
        if isinstance(value, types.ModuleType) and value.__name__ == f"{name}.{attr}":
            return value  # a submodule the import system attached
        if f"{name}.{attr}" in DEFERRED:
            return importlib.import_module(f"{name}.{attr}")
        kind = DEFERRED[name].get(attr)
        if kind and _asked_by_taker(sys._getframe(1), *_TAKERS[kind]):
            return _stub(name, attr, kind)
        _execute(self)
        return getattr(self, attr)

    def __setattr__(self, attr, value):
        if not (isinstance(value, types.ModuleType) and value.__name__ == f"{self.__name__}.{attr}"):
            _execute(self)  # a later body would overwrite whatever is set now
        object.__setattr__(self, attr, value)

    def __delattr__(self, attr):
        _execute(self)
        delattr(self, attr)


def _execute(module: types.ModuleType) -> None:
    with _lock:
        if type(module) is not _DeferredModule:
            return
        spec = object.__getattribute__(module, "__spec__")
        parent = sys.modules.get(spec.name.rpartition(".")[0])
        if parent is not None:
            _execute(parent)  # parents run first, as in a plain import
        real = spec.loader.real
        object.__setattr__(module, "__class__", types.ModuleType)
        spec.loader = real
        module.__loader__ = real
        executed.append(spec.name)
        if os.environ.get(TRACE_ENV):
            print(f"collapsebench: deferred import of {spec.name} runs now, from:", file=sys.stderr)
            traceback.print_stack(sys._getframe(2), limit=6, file=sys.stderr)
        try:
            real.exec_module(module)
        except BaseException:
            sys.modules.pop(spec.name, None)
            raise


def _imports_undeferred_child(frame) -> bool:
    """True when the import system reads ``__path__`` to import a child that is not deferred."""
    if frame.f_code.co_filename not in _BOOTSTRAP or frame.f_code.co_name != "_find_and_load_unlocked":
        return False
    return frame.f_locals.get("name") not in DEFERRED


def _asked_by_taker(frame, prefix: str, module_level: bool) -> bool:
    """True when the attribute is read by code that a stand-in is meant for."""
    while frame is not None and frame.f_code.co_filename in _BOOTSTRAP:
        frame = frame.f_back  # ``from package import name`` asks through importlib's _handle_fromlist
    if frame is None or (module_level and frame.f_code.co_name != "<module>"):
        return False
    return str(frame.f_globals.get("__name__", "")).startswith(prefix)


def _real(module_name: str, attr: str):
    return getattr(importlib.import_module(module_name), attr)


def _stub(module_name: str, attr: str, kind: str):
    key = (module_name, attr)
    if key not in _stubs:
        make = {FUNCTION: _function_stub, CLASS: _class_stub, DYNAMO_DISABLE: _dynamo_disable_stub,
                DYNAMO_NOOP: _dynamo_noop_stub}[kind]
        _stubs[key] = make(module_name, attr)
    return _stubs[key]


def _dynamo_disable_stub(module_name: str, attr: str):
    """``torch._dynamo.disable`` for torch's own lazily disabled functions.

    While dynamo has never run, no frame hook exists, so calling the function is what the
    disabled function does; once dynamo has run, the real ``disable`` takes over for good.
    """

    def disable(fn, recursive=True, **kwargs):
        real = []

        def call(*args, **call_kwargs):
            dynamo = sys.modules.get(module_name)
            if not real and (dynamo is None or is_deferred(dynamo)):
                return fn(*args, **call_kwargs)
            if not real:
                real.append(getattr(dynamo, attr)(fn, recursive, **kwargs))
            return real[0](*args, **call_kwargs)

        return call

    return disable


def _dynamo_noop_stub(module_name: str, attr: str):
    """A dynamo marker that does nothing outside a compiled graph, as the real one does."""

    def marker(*args, **kwargs):
        dynamo = sys.modules.get(module_name)
        if dynamo is not None and not is_deferred(dynamo):
            return getattr(dynamo, attr)(*args, **kwargs)
        return None

    return marker


def _function_stub(module_name: str, attr: str):
    def forward(*args, **kwargs):
        return _real(module_name, attr)(*args, **kwargs)

    forward.__name__ = forward.__qualname__ = attr
    forward.__module__ = module_name
    return forward


class _StandInMeta(type):
    """A class that stands for ``module.attr`` until that module has run."""

    def _loaded(cls):
        module = sys.modules.get(cls._stand_in_for[0])
        if module is None or is_deferred(module):
            return None
        return getattr(module, cls._stand_in_for[1])

    def __instancecheck__(cls, obj):
        real = cls._loaded()
        return real is not None and isinstance(obj, real)

    def __subclasscheck__(cls, other):
        real = cls._loaded()
        return real is not None and issubclass(other, real)

    def __call__(cls, *args, **kwargs):
        return _real(*cls._stand_in_for)(*args, **kwargs)

    def __getattr__(cls, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(_real(*cls._stand_in_for), attr)


def _class_stub(module_name: str, attr: str):
    return _StandInMeta(attr, (), {"_stand_in_for": (module_name, attr), "__module__": module_name})
