"""Built-in strategies, provided through the same hook a third-party collapsebench plugin uses.

Each returns Avalanche training plugins for Avalanche's ``SupervisedTemplate``, so strategies
compose: ``replay+lwf`` trains with both plugins, ``replay+cbp`` replays with continual backprop.
The plasticity strategies (cbp, er_l2, l2, shrink_perturb, l2_init, redo) live in sibling
modules imported only when a run builds them; docs/strategies.md describes them.
"""

from __future__ import annotations

from collapsebench import Option, Strategy, StrategyParts, hookimpl


def _naive(context):
    return StrategyParts()  # plain SGD on each experience in turn


def _lwf(context, alpha, temperature):
    from avalanche.training.plugins import LwFPlugin

    return StrategyParts(plugins=[LwFPlugin(alpha=alpha, temperature=temperature)])


def _replay(context, mem_size, buffer):
    from avalanche.training.plugins import ReplayPlugin
    from avalanche.training.storage_policy import (
        ClassBalancedBuffer,
        ExperienceBalancedBuffer,
        ReservoirSamplingBuffer,
    )

    storage = {
        "reservoir": ReservoirSamplingBuffer,
        "experience_balanced": ExperienceBalancedBuffer,
        "class_balanced": ClassBalancedBuffer,
    }[buffer](max_size=mem_size)
    return StrategyParts(plugins=[ReplayPlugin(mem_size=mem_size, storage_policy=storage)])


def _ewc(context, ewc_lambda, mode, decay_factor):
    from avalanche.training.plugins import EWCPlugin

    return StrategyParts(
        plugins=[EWCPlugin(ewc_lambda=ewc_lambda, mode=mode, decay_factor=decay_factor if mode == "online" else None)]
    )


def _cbp(context, **options):
    from .cbp import build

    return build(context, **options)


def _er_l2(context, **options):
    from .er_l2 import build

    return build(context, **options)


def _l2(context, **options):
    from .regularizers import build_l2

    return build_l2(context, **options)


def _shrink_perturb(context, **options):
    from .regularizers import build_shrink_perturb

    return build_shrink_perturb(context, **options)


def _l2_init(context, **options):
    from .regularizers import build_l2_init

    return build_l2_init(context, **options)


def _redo(context, **options):
    from .redo import build

    return build(context, **options)


PLASTICITY_STRATEGIES = [
    Strategy(
        "cbp",
        "Continual backprop (Dohare et al.): replace a fraction of mature, low-utility units after each update",
        _cbp,
        options=(
            Option("replacement_rate", 1e-4,
                   "ρ: fraction of the mature units replaced per step (fractions carry over)", minimum=0.0, maximum=1.0),
            Option("maturity_threshold", 100, "m: a unit is eligible for replacement after more than m steps", minimum=0),
            Option("decay_rate", 0.99, "η: decay of the running utility and mean activation", minimum=0.0, maximum=1.0),
        ),
    ),
    Strategy(
        "er_l2",
        "ER+L2 (He et al.): keep the tapped layers' feature effective rank high, plus L2 weight decay",
        _er_l2,
        options=(
            Option("mode", "ascent", "ascent: separate ascent step on erank (public code); loss: loss - beta*erank",
                   choices=("ascent", "loss")),
            Option("beta", 1.0, "coefficient of the erank term in loss mode", minimum=0.0),
            Option("step_size", 0.01, "size of the plain gradient-ascent step on erank in ascent mode", minimum=0.0),
            Option("batch_size", 100, "recent training inputs the ascent step's erank is measured on", minimum=2),
            Option("weight_decay", 1e-3, "L2 weight decay (He et al. on permuted MNIST; swept 1e-3 to 1e-5)", minimum=0.0),
        ),
    ),
    Strategy(
        "l2",
        "L2: weight decay on every parameter, added to the gradient after the backward pass",
        _l2,
        options=(Option("weight_decay", 1e-4, "λ: the gradient gains λθ, i.e. the loss gains (λ/2)‖θ‖²", minimum=0.0),),
    ),
    Strategy(
        "shrink_perturb",
        "Shrink & Perturb: weight decay plus Gaussian noise added to the weights after each update",
        _shrink_perturb,
        options=(
            Option("weight_decay", 1e-4, "λ: weight decay through the gradient (published 1e-4 to 1e-5)", minimum=0.0),
            Option("noise_std", 1e-5,
                   "σ: standard deviation of the noise added after each update (published 1e-4 to 1e-6)", minimum=0.0),
        ),
    ),
    Strategy(
        "l2_init",
        "L2 Init (Kumar et al.): loss + λ‖θ − θ₀‖², pulling toward the initial weights",
        _l2_init,
        options=(Option("coefficient", 1e-3, "λ in loss + λ‖θ − θ₀‖²", minimum=0.0),),
    ),
    Strategy(
        "redo",
        "ReDo (Sokar et al.): every K steps re-initialize the τ-dormant units of the tapped layers",
        _redo,
        options=(
            Option("every_n_steps", 1000, "K: training steps between recycling passes", minimum=1),
            Option("threshold", 0.025, "τ: a unit is dormant when E|h_i| / mean_k E|h_k| <= τ", minimum=0.0),
            Option("score_batches", 1, "E|h| is measured on the last this many training mini-batches (Sokar: 1)", minimum=1),
        ),
    ),
]


@hookimpl
def collapsebench_strategies():
    return [
        Strategy("naive", "Plain SGD, one experience after another (Avalanche's SupervisedTemplate)", _naive),
        Strategy(
            "lwf",
            "Learning without Forgetting: distil the previous model's outputs (Avalanche's LwFPlugin)",
            _lwf,
            options=(
                Option("alpha", 1.0, "weight of the distillation loss (Avalanche's default)", minimum=0.0),
                Option("temperature", 2.0, "softmax temperature of the distillation (Avalanche's default)", minimum=1e-6),
            ),
        ),
        Strategy(
            "replay",
            "Experience replay from a memory buffer (Avalanche's ReplayPlugin)",
            _replay,
            options=(
                Option("mem_size", 2000, "buffer size; 2,000 as in Zhu & Jin", minimum=1),
                Option(
                    "buffer",
                    "reservoir",
                    "which samples stay: reservoir sampling as in Zhu & Jin, or balanced per experience/class",
                    choices=("reservoir", "experience_balanced", "class_balanced"),
                ),
            ),
        ),
        Strategy(
            "ewc",
            "Elastic Weight Consolidation: a Fisher-weighted pull toward past weights (Avalanche's EWCPlugin)",
            _ewc,
            options=(
                Option("ewc_lambda", 1000.0, "penalty weight; large because Fisher values on small nets are tiny", minimum=0.0),
                Option("mode", "separate", "one penalty per past experience, or one online running penalty",
                       choices=("separate", "online")),
                Option("decay_factor", 0.9, "decay of the online penalty (mode = online only)", minimum=0.0, maximum=1.0),
            ),
        ),
        *PLASTICITY_STRATEGIES,
    ]
