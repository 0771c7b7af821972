"""Per-iteration Avalanche training plugin callbacks, called only where they do something.

Avalanche's SGD templates announce a dozen events per iteration (``before_forward``,
``after_update``, ...) through ``avalanche.training.utils.trigger_plugins``: for every plugin,
``hasattr``, ``getattr`` and a call. Most plugins inherit Avalanche's empty default for most
events, so a run with five plugins paid some sixty Python calls per minibatch, nearly all of
them to ``pass``: a tenth of an MLP's training step on MNIST (docs/performance.md).

:class:`LeanDispatchMixin` keeps Avalanche's loop and its order of calls. For the per-iteration
events only, it calls the plugins in ``strategy.plugins`` order, as ``trigger_plugins`` does,
but leaves out every callback whose function body is empty (Avalanche's defaults, and any
plugin's ``def after_forward(...): pass``): skipping a call that does nothing changes nothing.
Emptiness is read from the function's bytecode, so an Avalanche upgrade that gives a default a
body makes that callback called again rather than silently skipped. Avalanche's own callbacks
that are idle in some settings (``PeriodicEval`` after an iteration, unless it evaluates per
iteration) are left out by a rule per function (:func:`idle_rules`), keyed by the function
itself, so an upgrade that changes the function makes it called again.

The callbacks found are kept per event until ``strategy.plugins`` changes (checked at every
event, element by element): a plugin added or removed mid-run is seen at the next event. A
plugin that re-binds one of its callbacks on the instance while an experience runs is the one
case not followed; no Avalanche or collapsebench plugin does.

A plugin can say that some of its callbacks are idle for now: ``collapsebench_idle(event)``
returning True leaves that event's callback out, and the plugin calls :func:`callbacks_changed`
on the strategy when its answer changes (the interrupt check, ``interrupts.StopAtSafePoint``,
is idle until a stop is requested).

A template that defines a per-iteration trigger method itself (Avalanche's DER and SCR replay
inside ``_before_forward``) keeps it: :func:`own_triggers` puts it in front of the lean one.
Where the template's epoch loop and trigger methods are all Avalanche's, ``leanloop`` runs the
epoch and walks the same callback lists (:func:`callbacks_for`) without the trigger methods.
"""

from __future__ import annotations

import types

#: The events announced once or more per minibatch; the rarer ones keep Avalanche's own path.
PER_ITERATION = (
    "before_training_iteration", "before_forward", "after_forward", "before_backward", "after_backward",
    "before_update", "after_update", "after_training_iteration",
    "before_eval_iteration", "before_eval_forward", "after_eval_forward", "after_eval_iteration",
)


def _empty(strategy, *args, **kwargs):
    """The reference body: a docstring and nothing else."""


def _empty_return(strategy, *args, **kwargs):
    return None


_EMPTY_CODE = {_empty.__code__.co_code, _empty_return.__code__.co_code}


def does_nothing(callback) -> bool:
    """True when ``callback`` is a plain function (or a method of one) whose body only returns None."""
    function = getattr(callback, "__func__", callback)
    if not isinstance(function, types.FunctionType):
        return False  # a callable object, a builtin, a partial: it may do anything
    code = function.__code__
    return code.co_code in _EMPTY_CODE and not code.co_flags & (0x20 | 0x80 | 0x200)  # generator, coroutine, async gen


def idle_rules() -> dict:
    """Avalanche callbacks that do something only in some settings: function -> "idle for this plugin?".

    Read from Avalanche's source (avalanche/training/templates/base_sgd.py): ``PeriodicEval``, which
    every SGD template adds, evaluates after a training iteration only in ``peval_mode
    "iteration"`` with ``eval_every > 0``; otherwise its callback only compares two settings. The
    settings are read when the callback list is built (the plugin list changed); tests/
    test_avalanche_equivalence.py checks the rule against the class.
    """
    global _IDLE_RULES
    if _IDLE_RULES is None:
        from avalanche.training.templates.base_sgd import PeriodicEval

        _IDLE_RULES = {
            PeriodicEval.after_training_iteration: lambda p: p.peval_mode != "iteration" or not p.eval_every > 0,
        }
    return _IDLE_RULES


_IDLE_RULES = None


def listeners(plugins, event: str) -> list:
    """The bound callbacks of ``event`` that ``trigger_plugins`` would call and that do something."""
    rules = idle_rules()
    found = []
    for plugin in plugins:
        callback = getattr(plugin, event, None)
        if callback is None or does_nothing(callback):
            continue
        idle = getattr(plugin, "collapsebench_idle", None)
        if idle is not None and idle(event):
            continue
        rule = rules.get(getattr(callback, "__func__", None))
        if rule is not None and getattr(callback, "__self__", None) is plugin and rule(plugin):
            continue
        found.append(callback)
    return found


_CACHE = "_collapsebench_listeners"


def callbacks_changed(strategy) -> None:
    """Have ``strategy`` find its per-iteration callbacks again at its next event.

    For a plugin whose ``collapsebench_idle`` answer changed. Safe to call from a signal
    handler: it only drops the strategy's cache, and a trigger running at that moment keeps
    the list it already holds.
    """
    strategy.__dict__.pop(_CACHE, None)


class LeanDispatchMixin:
    """Put before an Avalanche SGD template class: its per-iteration events skip empty callbacks."""

    #: A cache of this process, rebuilt from the plugins; checkpoints leave it out.
    collapsebench_transient = (_CACHE,)


def _cached(strategy, key, find, *args):
    # Found again whenever strategy.plugins changed (list equality: same plugins, same order) or
    # callbacks_changed dropped the cache; otherwise a dictionary look-up.
    cache = strategy.__dict__.get(_CACHE)
    if cache is None:
        cache = strategy.__dict__[_CACHE] = {}
    plugins = strategy.plugins
    entry = cache.get(key)
    if entry is None or entry[0] != plugins:
        entry = cache[key] = (list(plugins), find(plugins, *args))
    return entry[1]


def callbacks_for(strategy, event: str) -> list:
    """The callbacks of ``event`` that do something, for ``strategy``'s plugins as they are now."""
    return _cached(strategy, event, listeners, event)


#: The events between Avalanche's empty loss and the backward pass.
BEFORE_BACKWARD = ("before_forward", "after_forward", "before_backward")


def needs_empty_loss(strategy) -> bool:
    """Whether a callback before the backward pass may rely on Avalanche's empty loss.

    Avalanche's loop sets ``strategy.loss = torch.zeros(1)`` before the forward pass and adds the
    criterion to it in place. A callback before the backward pass that reads the loss before the
    criterion is added, or changes it in place (``strategy.loss += penalty``, as Avalanche's EWC
    and LwF do), needs that fresh tensor. A plugin whose callbacks do neither (they replace the
    loss, ``strategy.loss = strategy.loss + penalty``, or leave it alone) says so with
    ``collapsebench_needs_empty_loss = False``; ``leanloop`` then uses the criterion's value as
    the loss. Any other plugin with such a callback is assumed to need it.
    """
    return _cached(strategy, "needs empty loss", _needing_empty_loss)


def _needing_empty_loss(plugins) -> bool:
    return any(getattr(getattr(callback, "__self__", None), "collapsebench_needs_empty_loss", True)
               for event in BEFORE_BACKWARD for callback in listeners(plugins, event))


def _trigger(event: str):
    # One function per event: it runs a dozen times per minibatch.
    def trigger(self, **kwargs):
        for callback in callbacks_for(self, event):
            callback(self, **kwargs)

    trigger.__name__ = trigger.__qualname__ = f"_{event}"
    trigger.__doc__ = f"Avalanche's ``trigger_plugins(self, {event!r})``, less the callbacks that do nothing."
    return trigger


for _event in PER_ITERATION:
    setattr(LeanDispatchMixin, f"_{_event}", _trigger(_event))
del _event


def with_lean_dispatch(template_cls: type) -> type:
    """``template_cls`` with :class:`LeanDispatchMixin` and ``leaneval.LeanEvalMixin`` in front,
    ``leanstep``'s minibatch methods where it has Avalanche's, and ``leanloop.LeanLoopMixin``
    where its epoch loop is Avalanche's, as a named class of this module.

    Named, not anonymous, so that Avalanche's checkpointing pickles instances by reference.
    """
    if issubclass(template_cls, LeanDispatchMixin):
        return template_cls
    name = f"LeanDispatch_{template_cls.__module__.replace('.', '_')}_{template_cls.__qualname__.replace('.', '_')}"
    if name not in globals():
        from collapsebench import leanloop
        from collapsebench.leaneval import LeanEvalMixin
        from collapsebench.leanstep import lean_step_methods

        namespace = {"__module__": __name__, "__qualname__": name, **lean_step_methods(template_cls),
                     **own_triggers(template_cls)}
        loop = (leanloop.LeanLoopMixin,) if leanloop.fits(template_cls) else ()
        globals()[name] = type(name, (LeanDispatchMixin, *loop, LeanEvalMixin, template_cls), namespace)
    return globals()[name]


def own_triggers(template_cls: type) -> dict:
    """The per-iteration trigger methods ``template_cls`` defines itself (Avalanche's DER and SCR
    do, to replay inside ``_before_forward``): kept, in front of the mixin's lean ones."""
    from avalanche.training.templates.base_sgd import BaseSGDTemplate

    kept = {}
    for event in PER_ITERATION:
        attribute = f"_{event}"
        defined = getattr(template_cls, attribute, None)  # a plain function: triggers are instance methods
        if defined is not None and defined is not BaseSGDTemplate.__dict__.get(attribute):
            kept[attribute] = defined
    return kept
