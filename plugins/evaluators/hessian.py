"""The Hessian spectrum of the training loss at the end of each experience and the start of the next.

He et al. see loss of plasticity in the Hessian at the start of a new task: its spectrum
collapses (much of the density's mass near zero). So this evaluator measures twice around each
task boundary: at the end of experience j, on experience j's probe inputs, and before the first
update of experience j + 1, on experience j + 1's probe inputs (the loss the next task will
descend), with the head already grown or reset as training will see it.
"""

from __future__ import annotations

import torch
from torch import nn

from collapsebench import CollapseMetric, Measurement, taps_of
from collapsebench.metrics.hessian import (
    hessian_density,
    hessian_erank,
    hessian_near_zero_mass,
    hessian_top_eigenvalues,
    hessian_trace,
    smooth_density,
)

WHOLE_MODEL = ("model", "all")


class _WithTaskLabels(nn.Module):
    """``model(x)`` for a multi-head model: Avalanche's forward with the probe batch's task labels."""

    def __init__(self, model: nn.Module, task_labels: torch.Tensor):
        super().__init__()
        self.model = model
        self.task_labels = task_labels

    def forward(self, inputs):
        from avalanche.models.utils import avalanche_forward

        return avalanche_forward(self.model, inputs, self.task_labels)


class HessianMetric(CollapseMetric):
    """Top-k eigenvalues, trace, density, hessian_erank and near-zero mass of the loss Hessian.

    The loss is the strategy's criterion (``strategy._criterion``: cross-entropy in every
    built-in run) on a fixed batch: the first ``batch_size`` probe inputs of the experience in
    question (``inputs="experience"``) or of the whole probe set (``inputs="all"``). The whole
    model is measured (kind ``model``, layer ``all``) and, with ``per_layer``, each tapped
    layer's diagonal block: its weights and its incoming layer's bias (kind ``layer``). With
    ``figures`` the whole model's smoothed density goes to TensorBoard as an image.
    """

    def __init__(self, context, k: int = 5, per_layer: bool = False, trace_samples: int = 50,
                 density_steps: int = 50, density_vectors: int = 2, batch_size: int = 256,
                 inputs: str = "experience", tol: float = 1e-3, figures: bool = True, every_n_iterations: int = 0):
        super().__init__(context.recorder, every_n_iterations=every_n_iterations, at_experience_start=True)
        self.context = context
        self.k = k
        self.per_layer = per_layer
        self.trace_samples = trace_samples
        self.density_steps = density_steps
        self.density_vectors = density_vectors
        self.batch_size = batch_size
        self.inputs = inputs
        self.tol = tol
        self.figures = figures

    def probe_batch(self, experience: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(inputs, targets, task labels): the same batch every time the same experience is measured."""
        probe = self.context.probe
        chosen = torch.arange(len(probe))
        if self.inputs == "experience" and bool(probe.experience_mask(experience).any()):
            chosen = chosen[probe.experience_mask(experience)]
        chosen = chosen[: self.batch_size]
        return probe.inputs[chosen], probe.targets[chosen], probe.task_labels[chosen]

    def measure(self, strategy, phase):
        inputs, targets, task_labels = self.probe_batch(strategy.experience.current_experience)
        device = strategy.device
        model = _WithTaskLabels(strategy.model, task_labels.to(device))
        inputs, targets = inputs.to(device), targets.to(device)
        loss_fn = strategy._criterion
        used = _params_in_loss(model, loss_fn, inputs, targets)
        blocks = [(WHOLE_MODEL, used)]
        if self.per_layer:
            used_ids = {id(p) for p in used}
            for tap in taps_of(strategy.model):
                params = [*tap.weights]
                bias = getattr(tap.incoming, "bias", None)
                if isinstance(bias, nn.Parameter) and bias.requires_grad:
                    params.append(bias)
                if all(id(p) in used_ids for p in params):
                    blocks.append((("layer", tap.name), params))
        experience = strategy.experience.current_experience
        for (kind, layer), params in blocks:
            yield from self._spectrum(model, loss_fn, inputs, targets, params, kind, layer, phase, experience)

    def _spectrum(self, model, loss_fn, inputs, targets, params, kind, layer, phase, experience):
        top = hessian_top_eigenvalues(model, loss_fn, inputs, targets, k=min(self.k, _count(params)),
                                      params=params, tol=self.tol)
        trace = hessian_trace(model, loss_fn, inputs, targets, samples=self.trace_samples, params=params)
        density = hessian_density(model, loss_fn, inputs, targets, steps=self.density_steps,
                                  vectors=self.density_vectors, params=params)
        lambda_max = top.eigenvalues[0]
        yield Measurement(
            "hessian_top_eigenvalues", kind, layer, lambda_max,
            data={"eigenvalues": top.eigenvalues, "residuals": top.residuals,
                  "converged": top.converged, "hvp_count": top.hvp_count, "parameters": _count(params)},
        )
        yield Measurement("hessian_trace", kind, layer, trace.estimate,
                          data={"standard_error": trace.standard_error, "samples": self.trace_samples})
        yield Measurement(
            "hessian_density", kind, layer, None,
            data={"nodes": density.nodes, "weights": density.weights},
            figure=density_image(density, f"Hessian density, {phase}, experience {experience}")
            if self.figures and kind == WHOLE_MODEL[0] else None,
        )
        yield Measurement("hessian_erank", kind, layer, hessian_erank(top))
        yield Measurement("hessian_near_zero_mass", kind, layer, hessian_near_zero_mass(density, lambda_max=lambda_max))


def _count(params) -> int:
    return sum(p.numel() for p in params)


def _params_in_loss(model: nn.Module, loss_fn, inputs, targets) -> list[nn.Parameter]:
    """The trainable parameters the loss depends on.

    Others (the heads of other tasks in a multi-head model) would only add zero rows and
    columns to H, that is, spurious mass at zero in the density.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.enable_grad():
            loss = loss_fn(model(inputs), targets)
            gradients = torch.autograd.grad(loss, trainable, allow_unused=True)
    finally:
        for module, training in modes:
            module.training = training
    return [p for p, g in zip(trainable, gradients) if g is not None]


def density_image(density, title: str):
    """The density smoothed with a Gaussian, on a log scale as He et al. plot it, drawn with
    matplotlib's Agg backend into a PIL image.

    Drawn here rather than handed to TensorBoard as a figure, so that its cost (about 0.2 s)
    counts as evaluator time, not training time. Five decades below the peak are shown: a log
    axis over the smoothed curve's full range (down to 1e-300) costs twice as much to draw.
    """
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    grid, values = smooth_density(density)
    floor = max(values) * 1e-5 if max(values) > 0 else 1e-12
    figure = Figure(figsize=(5, 3.5), dpi=80)
    canvas = FigureCanvasAgg(figure)
    axes = figure.subplots()
    axes.semilogy(grid, np.maximum(values, floor))
    axes.set_ylim(floor * 0.9, max(values) * 2 if max(values) > 0 else 1.0)
    axes.set_xlabel("eigenvalue")
    axes.set_ylabel("density (smoothed)")
    axes.set_title(title)
    figure.subplots_adjust(left=0.16, bottom=0.14, right=0.97, top=0.9)
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy())
