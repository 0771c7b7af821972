"""Data on the device: with ``config.device`` other than the CPU, the gathered experience lives on
that device and no training or evaluation step copies a minibatch from host memory.

What proves this without a GPU. On the CPU the property is invisible: host and device are the
same memory, ``.to("cpu")`` returns its input, and a copy per step would look like no copy at
all. The meta device, which every build of torch has, is a second device: its tensors have a
shape, a dtype and a device but no data, and every operation runs a shape-only kernel. A copy
from host memory to it goes through the dispatcher as ``aten._to_copy`` (or ``copy_``) with a CPU
input and a meta output, which a ``TorchDispatchMode`` sees exactly as it would see a copy from
the host to a CUDA device. The data path is the same Python code for meta and CUDA (the gather,
its placement on ``strategy.device``, ``TensorBatches``, Avalanche's ``_unpack_minibatch``
``.to(device)``); only the kernels differ. The training loop runs for real on meta: the run's own
template (``runner.make_template``: its template mixin and its tensor-batches plugin), forward, loss,
backward, the SGD step with momentum, and the online-accuracy Avalanche training plugin. A
tensor made on the wrong device would either fail with a device mismatch or show in the log.

Left out, because they read values and meta tensors have none: the divergence guard
(``loss.item()``) and Avalanche's accuracy and loss metrics (``float()``). Those read a scalar back
from the device, a synchronisation, not a copy from host memory.

The negative control runs the same check on Avalanche's own DataLoader (a stream that does not
declare fixed samples): it sees one host-to-device copy per tensor of every minibatch, so the
check can fail.
"""

from __future__ import annotations

import warnings

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from collapsebench import fastdata
from collapsebench.config import build_config
from collapsebench.records import StreamData

N_TRAIN, N_TEST, BATCH, EPOCHS, IN, CLASSES = 70, 40, 16, 2, 5, 3
STEPS_PER_EPOCH = -(-N_TRAIN // BATCH)
DEVICE = "meta"


class OpLog(TorchDispatchMode):
    """Every operation while ``on``: its name, the devices of its tensor inputs and outputs, its output shape."""

    def __init__(self):
        super().__init__()
        self.on = False
        self.ops: list[tuple[str, list[str], list[str], tuple | None]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.on:
            inputs = [a.device.type for a in (*args, *kwargs.values()) if torch.is_tensor(a)]
            outputs = [o.device.type for o in (out if isinstance(out, (list, tuple)) else [out]) if torch.is_tensor(o)]
            self.ops.append((str(func), inputs, outputs, tuple(out.shape) if torch.is_tensor(out) else None))
        return out

    def host_to_device(self) -> list[tuple]:
        return [op for op in self.ops if "cpu" in op[1] and DEVICE in op[2]]

    def made_on_host(self) -> list[tuple]:
        return [op for op in self.ops if "cpu" in op[2]]


def tiny_stream(fixed_samples: bool) -> StreamData:
    from collapsebench_plugins.streams.tensors import assemble, tensor_dataset

    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(N_TRAIN, IN, generator=generator), torch.randint(0, CLASSES, (N_TRAIN,), generator=generator)
    benchmark = assemble([tensor_dataset(x, y)], [tensor_dataset(x[:N_TEST], y[:N_TEST])], [set(range(CLASSES))])
    return StreamData(benchmark=benchmark, input_shape=(IN,), n_classes=CLASSES, scenario="class",
                      fixed_samples=fixed_samples, description="tiny", fingerprint="tiny")


def logged_run(fixed_samples: bool, monkeypatch):
    """Train and evaluate one experience on the meta device; log every operation of the epochs.

    The one-time gather (and its single copy to the device) is left out of the log: it is not a step.
    """
    from avalanche.core import SupervisedPlugin

    from collapsebench.evaluation import LeanEvaluationPlugin
    from collapsebench.online import OnlineAccuracy
    from collapsebench.runner import make_template

    log = OpLog()
    gather_onto = fastdata.gather_onto
    gathered = []

    def unlogged_gather(dataset, device):
        was, log.on = log.on, False
        try:
            gathered.append(gather_onto(dataset, device))
            return gathered[-1]
        finally:
            log.on = was

    monkeypatch.setattr(fastdata, "gather_onto", unlogged_gather)

    class Epochs(SupervisedPlugin):
        """Logs from the start of each epoch (train) or experience (eval) to its end."""

        def before_training_epoch(self, strategy, **kwargs):
            log.on = True

        def after_training_epoch(self, strategy, **kwargs):
            log.on = False

        def before_eval_exp(self, strategy, **kwargs):
            log.on = True

        def after_eval_exp(self, strategy, **kwargs):
            log.on = False

    config = build_config({"epochs": EPOCHS, "batch_size": BATCH, "eval_batch_size": 16})
    config.device = DEVICE  # not a user choice (config accepts cpu, cuda, mps): a test device
    stream = tiny_stream(fixed_samples)
    model = torch.nn.Sequential(torch.nn.Linear(IN, 8), torch.nn.ReLU(), torch.nn.Linear(8, CLASSES))
    online = OnlineAccuracy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # no loggers, on purpose
        evaluation = LeanEvaluationPlugin(loggers=[])
    strategy = make_template(config, stream, model, evaluator=evaluation, plugins=[online, Epochs()])
    with log:
        strategy.train(stream.benchmark.train_stream[0])
        strategy.eval(stream.benchmark.test_stream)
    return log, strategy, online, gathered


def test_no_step_copies_from_host_memory(monkeypatch):
    log, strategy, online, gathered = logged_run(fixed_samples=True, monkeypatch=monkeypatch)
    assert log.ops, "nothing was logged: the window plugin never ran"
    # The gathered experiences (train, then test) were placed on the device, once each.
    assert len(gathered) == 2
    assert all(t.device.type == DEVICE for tensors in gathered for t in tensors)
    # Within the epochs, the only host memory is the permutation drawn on the CPU generator (so
    # that batches are the same on every device), copied once per epoch, never per step.
    assert [op[0] for op in log.made_on_host()] == ["aten.randperm.default"] * EPOCHS
    copies = log.host_to_device()
    assert len(copies) == EPOCHS < EPOCHS * STEPS_PER_EPOCH
    assert all(shape == (N_TRAIN,) for *_, shape in copies)  # an index per sample, not sample data
    # What the steps made lives on the device: the model and optimizer state, the online count.
    assert all(p.device.type == DEVICE for p in strategy.model.parameters())
    assert all(t.device.type == DEVICE for state in strategy.optimizer.state.values() for t in state.values()
               if torch.is_tensor(t))
    online._flush()  # what accuracy() does before it reads the count back (meta tensors have no value to read)
    assert online._correct.device.type == DEVICE and online.seen == EPOCHS * N_TRAIN


def test_the_check_sees_a_copy_per_step_from_avalanches_own_loader(monkeypatch):
    """The negative control: without the gathered tensors, every minibatch comes from host memory."""
    log, *_ = logged_run(fixed_samples=False, monkeypatch=monkeypatch)
    copies = log.host_to_device()
    eval_steps = -(-N_TEST // 16)
    # inputs, labels and task labels of each minibatch, each copied by Avalanche's _unpack_minibatch
    assert len(copies) == 3 * (EPOCHS * STEPS_PER_EPOCH + eval_steps)
    assert {"aten._to_copy.default"} == {op[0] for op in copies}
