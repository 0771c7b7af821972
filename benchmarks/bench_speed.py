"""How much does collapsebench cost over a hand-written PyTorch loop?

Three ways to train the same MLP (784-256-256-10, SGD) on split MNIST, 5 experiences, with the
same batch size and epochs, measured in one process and interleaved so that they share the
machine's noise:

- ``hand loop``: a plain PyTorch loop over the stream's tensors (shuffled minibatches).
- ``collapsebench``: ``collapsebench.runner.execute`` with no evaluators (Avalanche's
  SupervisedTemplate and evaluation inside); its recorded training time, without and with the
  one-time gathering of each experience into tensors (the hand loop gets its tensors ready).
- ``avalanche SplitMNIST``: Avalanche's ``Naive`` on its own ``SplitMNIST`` (per-sample
  torchvision transforms), for reference.

Only training time is compared (each experience's training, no evaluation); medians over
``--repeats``, and the median over repeats of each repeat's own ratio to the hand loop (the
contenders of one repeat run back to back, so they share that moment's load). Needs the MNIST
files under --data-root (default: ../shared/data).

``--clock cpu`` times every contender by this thread's CPU time instead of wall time (it stands
in for ``time.perf_counter`` while the benchmark runs, so collapsebench's own recorded timings
use it too): on a machine shared with other jobs, time spent waiting for a core then counts for
no one. All training runs in the main thread, so nothing is missed.

A second table pairs the two at the grain of one epoch: inside each collapsebench run, every
training epoch is timed next to a hand-loop epoch over the tensors that epoch trains on (its own
model and optimizer, the order of the two alternating), so each pair shares the machine's load of
that second rather than of a whole run. On a shared machine whose speed drifts by tens of percent
from one run to the next, this is the comparison that stays put; the time collapsebench spends in
an experience outside its epochs (data loader, optimizer reset, end-of-epoch checks) is measured
in the same runs and added.

``--ablate`` adds a third table with the same pairing: the run as it is (collapsebench's epoch
loop, ``collapsebench/leanloop.py``), against the run with that loop replaced (for the benchmark
only) by Avalanche's own ``SGDUpdate.training_epoch``, by Avalanche's loop written inline without
its trigger methods, and by a bare loop that calls only the run's non-empty callbacks around
forward, backward and step. It shows what the template's loop itself costs.

The paired table ends with each side against itself run alone (the whole runs above): the
hand epochs paired inside collapsebench runs were found 9-11% slower than the hand loop alone,
collapsebench's epochs not (docs/performance.md), which is why the whole-run ratio is the
user's figure.

``--breakdown`` adds a table of one training step piece by piece: the run's loop (collapsebench's
epoch loop, written inline with a timer around every piece and every callback) and the hand loop,
epochs taking turns over the same minibatches, each piece's median wall time per call. Medians of
a few thousand calls of some microseconds hold still where whole epochs do not, so this is the
table that shows where the overhead is.

When CUDA is available, a GPU section follows (wall time, synchronized): the same three ways
with ``--device cuda``, the hand loop holding its tensors on the GPU as collapsebench's gathered
experiences do. Without CUDA it says why it is skipped.

    uv run python benchmarks/bench_speed.py --repeats 5
    uv run python benchmarks/bench_speed.py --repeats 9 --threads 1 --clock cpu
    uv run python benchmarks/bench_speed.py --repeats 10 --threads 1 --clock cpu --ablate
    uv run python benchmarks/bench_speed.py --repeats 7 --threads 1 --clock cpu --breakdown
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent


def stream_tensors(benchmark):
    """Each training experience's (inputs, targets) as tensors, gathered once."""
    experiences = []
    for experience in benchmark.train_stream:
        dataset = experience.dataset
        xs, ys = zip(*[(x, y) for x, y, *_ in (dataset[i] for i in range(len(dataset)))])
        experiences.append((torch.stack(xs), torch.tensor(ys)))
    return experiences


def hand_loop(model_factory, experiences, epochs, batch_size, lr, momentum, seed, device="cpu") -> float:
    torch.manual_seed(seed)
    model = model_factory().to(device)
    experiences = [(x.to(device), y.to(device)) for x, y in experiences]  # ready on the device, as gathered
    criterion = torch.nn.CrossEntropyLoss()
    seconds = 0.0
    for inputs, targets in experiences:
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)  # as Avalanche: a fresh one each time
        _synchronize(device)
        started = time.perf_counter()
        for _ in range(epochs):
            hand_epoch(model, optimizer, criterion, inputs, targets, batch_size)
        _synchronize(device)
        seconds += time.perf_counter() - started
    return seconds


def hand_epoch(model, optimizer, criterion, inputs, targets, batch_size) -> None:
    """One epoch of the hand loop: shuffled minibatches cut from the tensors, forward, backward, step."""
    model.train()
    order = torch.randperm(len(targets)).to(inputs.device)
    for start in range(0, len(targets), batch_size):
        index = order[start : start + batch_size]
        x, y = inputs.index_select(0, index), targets.index_select(0, index)
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()


def _synchronize(device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


def collapsebench_run(manager, registry, data_root, epochs, batch_size, lr, momentum, seed, device="cpu"):
    from collapsebench.config import build_config
    from collapsebench.runner import execute

    with tempfile.TemporaryDirectory() as out:
        config = build_config({
            "stream": "split-mnist", "model": "mlp", "strategy": "naive", "evaluators": [],
            "epochs": epochs, "batch_size": batch_size, "lr": lr, "momentum": momentum, "seed": seed,
            "data_root": str(data_root), "out": out, "probe_size": 100, "device": device,
            "threads": torch.get_num_threads(),  # the hand loop's: a run sets its own, for itself only
        })
        result = execute(config, manager, registry, echo=lambda *a, **k: None)
    return result["timing"]["train"], result["timing"]["data"]


def avalanche_split_mnist(model_factory, data_root, epochs, batch_size, lr, momentum, seed, device="cpu") -> float:
    from avalanche.benchmarks.classic import SplitMNIST
    from avalanche.training import Naive

    benchmark = SplitMNIST(n_experiences=5, seed=seed, dataset_root=str(data_root))
    torch.manual_seed(seed)
    model = model_factory()
    strategy = Naive(
        model=model, optimizer=torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum),
        train_mb_size=batch_size, train_epochs=epochs, eval_mb_size=512, evaluator=None, device=device,
    )
    seconds = 0.0
    for experience in benchmark.train_stream:
        _synchronize(device)
        started = time.perf_counter()
        strategy.train(experience)
        _synchronize(device)
        seconds += time.perf_counter() - started
    return seconds


def measure(args, manager, registry, experiences, model_factory, device: str) -> dict[str, list[float]]:
    """Each contender once per repeat, in turn; seconds of training per contender and repeat."""
    budget = dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum, device=device)
    times = {"hand loop": [], "collapsebench": [], "collapsebench + one-time gathering": [], "avalanche SplitMNIST": []}
    for repeat in range(args.repeats):
        times["hand loop"].append(hand_loop(model_factory, experiences, seed=repeat, **budget))
        train, data = collapsebench_run(manager, registry, args.data_root, seed=repeat, **budget)
        times["collapsebench"].append(train)
        times["collapsebench + one-time gathering"].append(train + data)
        times["avalanche SplitMNIST"].append(avalanche_split_mnist(model_factory, args.data_root, seed=repeat, **budget))
        print(f"[{device}] repeat {repeat + 1}/{args.repeats}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()))
    return times


def table(times: dict[str, list[float]]) -> str:
    from tabulate import tabulate

    base = times["hand loop"]
    rows = []
    for name, values in times.items():
        paired = statistics.median(v / b for v, b in zip(values, base))
        rows.append([name, statistics.median(values), min(values), max(values),
                     statistics.median(values) / statistics.median(base), paired])
    return tabulate(rows, headers=["", "median s", "min s", "max s", "x hand loop", "median of paired x"],
                    floatfmt=".3f")


def loop_owners() -> tuple[type, ...]:
    """The classes whose ``training_epoch`` a run may use: Avalanche's ``SGDUpdate`` and, where the
    template's loop is that one, collapsebench's ``leanloop.LeanLoopMixin`` in front of it."""
    from avalanche.training.templates.update_type.sgd_update import SGDUpdate

    from collapsebench.leanloop import LeanLoopMixin

    return SGDUpdate, LeanLoopMixin


@contextlib.contextmanager
def epoch_loop(make_loop):
    """Every run's epoch loop replaced by ``make_loop(original)`` (for the benchmark only), then restored."""
    owners = loop_owners()
    originals = [owner.__dict__["training_epoch"] for owner in owners]
    for owner, original in zip(owners, originals):
        owner.training_epoch = make_loop(original)
    try:
        yield
    finally:
        for owner, original in zip(owners, originals):
            owner.training_epoch = original


class _EpochPairs:
    """Wraps the run's epoch loop (:func:`loop_owners`) for one run: each epoch is timed, and a hand-loop
    epoch over the same experience's tensors is timed right before or after it (alternating)."""

    def __init__(self, model_factory, experiences, batch_size, lr, momentum, seed):
        torch.manual_seed(seed + 1000)
        self.model, self.experiences, self.batch_size = model_factory(), experiences, batch_size
        self.lr, self.momentum = lr, momentum
        self.criterion = torch.nn.CrossEntropyLoss()
        self.optimizer, self.experience = None, None
        self.pairs: list[tuple[float, float]] = []  # (collapsebench epoch, hand epoch) seconds

    def hand_epoch(self, index: int, tensors) -> float:
        if index != self.experience:  # as the hand loop: a fresh optimizer per experience
            self.experience = index
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=self.lr, momentum=self.momentum)
        inputs, targets = tensors if tensors is not None else self.experiences[index]
        started = time.perf_counter()
        hand_epoch(self.model, self.optimizer, self.criterion, inputs, targets, self.batch_size)
        return time.perf_counter() - started

    def __enter__(self):
        pairs = self

        def timed(original):
            def timed_training_epoch(strategy, **kwargs):
                index = strategy.experience.current_experience
                tensors = _run_tensors(strategy)
                hand_first = len(pairs.pairs) % 2 == 0
                hand = pairs.hand_epoch(index, tensors) if hand_first else None
                started = time.perf_counter()
                result = original(strategy, **kwargs)
                ours = time.perf_counter() - started
                if not hand_first:
                    hand = pairs.hand_epoch(index, tensors)
                pairs.pairs.append((ours, hand))
                return result
            return timed_training_epoch

        self._patch = epoch_loop(timed)
        self._patch.__enter__()
        return self

    def __exit__(self, *exc):
        self._patch.__exit__(*exc)


def _run_tensors(strategy):
    """The (inputs, targets) the run trains on in this experience, gathered now if they were not yet.

    The hand epoch then covers exactly the run's minibatches (the run's seed picks the classes of
    each experience, so the stream's seed-0 experiences differ in size), and the one-time gathering,
    which the run does not count as training time, falls in neither epoch of the pair.
    """
    loader = strategy.dataloader
    loader = getattr(loader, "loader", loader)  # a PendingTensorBatches gathers here
    tensors = getattr(loader, "tensors", None)
    return None if tensors is None else (tensors[0], tensors[1])


def paired_epochs(args, manager, registry, experiences, model_factory, repeats: int | None = None,
                  alone: dict[str, list[float]] | None = None) -> str:
    """collapsebench's epochs against hand-loop epochs run beside them; the table as text.

    ``alone``: the whole-run seconds of :func:`measure`, to compare each side paired with itself alone.
    """
    from tabulate import tabulate

    repeats = repeats or args.repeats
    ratios, run_medians, ours_total, hand_total, outside_total, data_total = [], [], 0.0, 0.0, 0.0, 0.0
    hands_per_run, ours_per_run = [], []  # seconds per run: the hand epochs, collapsebench's epochs + outside
    for repeat in range(repeats):
        with _EpochPairs(model_factory, experiences, args.batch_size, args.lr, args.momentum, repeat) as pairs:
            train, data = collapsebench_run(manager, registry, args.data_root, args.epochs, args.batch_size,
                                            args.lr, args.momentum, seed=repeat)
        epochs, hands = sum(ours for ours, _ in pairs.pairs), sum(hand for _, hand in pairs.pairs)
        ratios.extend(ours / hand for ours, hand in pairs.pairs)
        ours_total, hand_total = ours_total + epochs, hand_total + hands
        # The hand epochs ran inside collapsebench's recorded training time: taken out again.
        outside_total, data_total = outside_total + (train - epochs - hands), data_total + data
        hands_per_run.append(hands)
        ours_per_run.append(train - hands)
        run_medians.append(statistics.median(ours / hand for ours, hand in pairs.pairs))
        print(f"[paired] repeat {repeat + 1}/{repeats}: {len(pairs.pairs)} epoch pairs, median x {run_medians[-1]:.3f}")
    quartiles = statistics.quantiles(ratios, n=4)
    median = statistics.median(ratios)
    outside, gathering = outside_total / hand_total, data_total / hand_total
    # The runs are the independent draws (each places its model in memory anew): their medians
    # give the standard error of the figure.
    spread = statistics.stdev(run_medians) / len(run_medians) ** 0.5 if len(run_medians) > 1 else float("nan")
    rows = [
        ["epoch, median of paired x", median, f"{quartiles[0]:.3f}-{quartiles[2]:.3f}"],
        ["epoch, mean of the runs' medians x", statistics.fmean(run_medians), f"standard error {spread:.3f}"],
        ["epochs, total x", ours_total / hand_total, ""],
        ["+ outside the epochs (share of hand time)", outside, ""],
        ["training time, estimated x", median + outside, ""],
        ["+ one-time gathering, estimated x", median + outside + gathering, ""],
    ]
    if alone:
        # Each side against itself run alone (medians over runs): where pairing moves one side's
        # speed and not the other's, the paired ratio is not the whole-run one (docs/performance.md).
        rows += [
            ["hand epochs paired / hand loop alone", statistics.median(hands_per_run)
             / statistics.median(alone["hand loop"]), "all its epochs, per run"],
            ["collapsebench paired / collapsebench alone", statistics.median(ours_per_run)
             / statistics.median(alone["collapsebench"]), "training time less the hand epochs"],
        ]
    return (f"\n{len(ratios)} collapsebench training epochs, each paired with a hand-loop epoch beside it "
            f"({args.clock} clock)\n" + tabulate(rows, headers=["", "value", "interquartile"], floatfmt=".3f"))


def inline_epoch(strategy, **kwargs):
    """Avalanche's ``SGDUpdate.training_epoch`` step for step, the non-empty callbacks called directly."""
    from collapsebench.dispatch import PER_ITERATION, listeners

    training_events = PER_ITERATION[:8]  # before_training_iteration ... after_training_iteration
    before_iteration, before_forward, after_forward, before_backward, after_backward, before_update, \
        after_update, after_iteration = [listeners(strategy.plugins, event) for event in training_events]
    around_backward, after_step = after_backward + before_update, after_update + after_iteration
    for strategy.mbatch in strategy.dataloader:
        if strategy._stop_training:
            break
        strategy._unpack_minibatch()
        for call in before_iteration:
            call(strategy, **kwargs)
        strategy.optimizer.zero_grad()
        strategy.loss = strategy._make_empty_loss()
        for call in before_forward:
            call(strategy, **kwargs)
        strategy.mb_output = strategy.forward()
        for call in after_forward:
            call(strategy, **kwargs)
        strategy.loss += strategy.criterion()
        for call in before_backward:
            call(strategy, **kwargs)
        strategy.backward()
        for call in around_backward:
            call(strategy, **kwargs)
        strategy.optimizer_step()
        for call in after_step:
            call(strategy, **kwargs)


def bare_epoch(strategy, **kwargs):
    """Forward, backward and step on the minibatch tensors, with only the run's non-empty callbacks
    (none of the template's methods, no empty loss to add to): a floor, not a correct strategy."""
    from collapsebench.dispatch import listeners

    after_forward = listeners(strategy.plugins, "after_forward")
    after_iteration = listeners(strategy.plugins, "after_training_iteration")
    model, optimizer, criterion = strategy.model, strategy.optimizer, strategy._criterion
    for minibatch in strategy.dataloader:
        if strategy._stop_training:
            break
        strategy.mbatch = minibatch
        optimizer.zero_grad()
        strategy.mb_output = output = model(minibatch[0])
        for call in after_forward:
            call(strategy, **kwargs)
        strategy.loss = loss = criterion(output, minibatch[1])
        loss.backward()
        optimizer.step()
        for call in after_iteration:
            call(strategy, **kwargs)


def ablation(args, manager, registry, experiences, model_factory) -> str:
    """Paired epoch ratios of the run as it is and with its epoch loop replaced; the table as text."""
    from tabulate import tabulate

    avalanche_loop = loop_owners()[0].__dict__["training_epoch"]
    loops = {"as run (collapsebench's lean loop)": None, "Avalanche's epoch loop": avalanche_loop,
             "Avalanche's loop inline, no trigger methods": inline_epoch,
             "bare loop with the run's callbacks": bare_epoch}
    ratios = {name: [] for name in loops}
    for repeat in range(args.repeats):
        names = list(loops) if repeat % 2 == 0 else list(loops)[::-1]
        for name in names:
            with epoch_loop(lambda original: loops[name] or original):
                with _EpochPairs(model_factory, experiences, args.batch_size, args.lr, args.momentum, repeat) as pairs:
                    collapsebench_run(manager, registry, args.data_root, args.epochs, args.batch_size, args.lr,
                                      args.momentum, seed=repeat)
            ratios[name].extend(ours / hand for ours, hand in pairs.pairs)
        print(f"[ablation] repeat {repeat + 1}/{args.repeats}")
    rows = []
    for name, values in ratios.items():
        quartiles = statistics.quantiles(values, n=4)
        rows.append([name, len(values), statistics.median(values), f"{quartiles[0]:.3f}-{quartiles[2]:.3f}"])
    return ("\nEpoch loops, each epoch paired with a hand-loop epoch beside it\n"
            + tabulate(rows, headers=["", "epoch pairs", "median x", "interquartile"], floatfmt=".3f"))


class _StepClock:
    """Median wall time of each named piece of a training step, in microseconds (``time.perf_counter_ns``:
    at this grain a median is steady even on a shared machine; the clock's own cost is measured too)."""

    def __init__(self):
        self.ns: dict[str, list[int]] = {}

    def timed(self, piece: str, call, *args, **kwargs):
        started = time.perf_counter_ns()
        result = call(*args, **kwargs)
        self.ns.setdefault(piece, []).append(time.perf_counter_ns() - started)
        return result

    def median_us(self, piece: str) -> float:
        return statistics.median(self.ns[piece]) / 1000


def timed_inline_epoch(clock: _StepClock, strategy, **kwargs):
    """``leanloop.LeanLoopMixin.training_epoch`` with each piece of the step timed: the same calls in
    the same order (less its re-checks for a plugin list changed mid-iteration), plus one look-up of
    an event without callbacks per step, to time what the loop pays per event."""
    from collapsebench.dispatch import PER_ITERATION, callbacks_for, needs_empty_loss
    from collapsebench.leanloop import uses_avalanches_backward, viewable

    events = PER_ITERATION[:8]
    quiet = next((event for event in events if not callbacks_for(strategy, event)), None)
    t = clock.timed

    def callbacks(event):
        for call in callbacks_for(strategy, event):
            owner = getattr(call, "__self__", None)
            name = type(owner).__name__ if owner is not None else call.__qualname__.split(".")[0]
            t(f"callback {name}.{event}", call, strategy, **kwargs)

    def add_criterion():
        strategy.loss += strategy.criterion()

    def criterion_loss():
        value = t("criterion", strategy.criterion)
        if t("viewable", viewable, strategy, value):
            strategy.loss = t("criterion as the one-element loss", value.view, 1)
            return value
        strategy.loss = strategy._make_empty_loss()
        strategy.loss += value
        return None

    avalanche_backward = uses_avalanches_backward(strategy)
    iterator = iter(strategy.dataloader)
    while not strategy._stop_training:
        try:
            strategy.mbatch = t("next minibatch", next, iterator)
        except StopIteration:
            break
        t("_unpack_minibatch", strategy._unpack_minibatch)
        callbacks("before_training_iteration")
        t("zero_grad", strategy.optimizer.zero_grad)
        empty_loss = t("needs_empty_loss", needs_empty_loss, strategy)
        if empty_loss:
            strategy.loss = t("_make_empty_loss", strategy._make_empty_loss)
        callbacks("before_forward")
        strategy.mb_output = t("forward", strategy.forward)
        callbacks("after_forward")
        criterion = None
        if empty_loss:
            t("loss += criterion", add_criterion)
        else:
            criterion = criterion_loss()
        callbacks("before_backward")
        if criterion is not None and not callbacks_for(strategy, "before_backward") and avalanche_backward:
            t("backward (from the criterion)", criterion.backward, retain_graph=strategy.retain_graph)
        else:
            t("backward", strategy.backward)
        callbacks("after_backward")
        callbacks("before_update")
        t("optimizer step", strategy.optimizer_step)
        callbacks("after_update")
        callbacks("after_training_iteration")
        if quiet is not None:
            t("look-up of an event without callbacks (8 per step)", callbacks_for, strategy, quiet)
        t("the clock itself (an empty call)", _nothing)


def _nothing():
    return None


def timed_hand_epoch(clock: _StepClock, model, optimizer, criterion, inputs, targets, batch_size) -> None:
    """:func:`hand_epoch` with its pieces timed."""
    t = clock.timed
    model.train()
    order = torch.randperm(len(targets)).to(inputs.device)
    for start in range(0, len(targets), batch_size):
        index = order[start : start + batch_size]
        x, y = t("hand: cut the minibatch", lambda: (inputs.index_select(0, index), targets.index_select(0, index)))
        t("hand: zero_grad", optimizer.zero_grad)
        output = t("hand: forward", model, x)
        loss = t("hand: criterion", criterion, output, y)
        t("hand: backward", loss.backward)
        t("hand: optimizer step", optimizer.step)


def breakdown(args, manager, registry, experiences, model_factory) -> str:
    """Where a step's time goes, piece by piece, in collapsebench's loop and in the hand loop; the table as text."""
    from tabulate import tabulate

    clock = _StepClock()
    torch.manual_seed(1000)
    hand_model = model_factory()
    hand_optimizer = torch.optim.SGD(hand_model.parameters(), lr=args.lr, momentum=args.momentum)
    criterion = torch.nn.CrossEntropyLoss()

    turn = [0]

    def epoch(strategy, **kwargs):
        inputs, targets = _run_tensors(strategy) or experiences[strategy.experience.current_experience]
        hand_first = turn[0] % 2 == 0  # the two take turns, as in the paired table
        turn[0] += 1
        if hand_first:
            timed_hand_epoch(clock, hand_model, hand_optimizer, criterion, inputs, targets, args.batch_size)
        timed_inline_epoch(clock, strategy, **kwargs)
        if not hand_first:
            timed_hand_epoch(clock, hand_model, hand_optimizer, criterion, inputs, targets, args.batch_size)

    with epoch_loop(lambda original: epoch):
        for repeat in range(min(args.repeats, 3)):
            collapsebench_run(manager, registry, args.data_root, args.epochs, args.batch_size, args.lr, args.momentum,
                              seed=repeat)
    step = sum(clock.median_us(p) for p in clock.ns if p.startswith("hand: "))
    rows = [[piece, len(clock.ns[piece]), clock.median_us(piece), 100 * clock.median_us(piece) / step]
            for piece in clock.ns]
    return ("\nOne training step piece by piece (wall clock, median per call; each timing includes the clock's own "
            "cost, its row below; % of the hand loop's step)\n"
            + tabulate(rows, headers=["", "calls", "median us", "% of hand step"], floatfmt=".1f"))


def gpu_section(args, manager, registry, experiences, model_factory) -> None:
    if not torch.cuda.is_available():
        print("\nGPU section skipped: torch.cuda.is_available() is False here (no CUDA GPU, no driver, or a "
              "torch built without CUDA). On a machine with one, this section times the same contenders "
              "with --device cuda.")
        return
    device = "cuda"
    print(f"\nGPU section: {torch.cuda.get_device_name(0)}, wall time, synchronized around each experience")
    hand_loop(model_factory, experiences, args.epochs, args.batch_size, args.lr, args.momentum, 0, device)  # warm-up
    times = measure(args, manager, registry, experiences, model_factory, device)
    print(table(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--paired-repeats", type=int, default=None,
                        help="collapsebench runs of the paired table (default: --repeats); each run places its "
                             "model in memory anew, which moves its speed by several percent, so a precise "
                             "figure needs tens of runs")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: time.perf_counter; cpu: this thread's CPU time (CPU section only)")
    parser.add_argument("--ablate", action="store_true", help="add the table of epoch loops (see above)")
    parser.add_argument("--breakdown", action="store_true", help="add the table of a step's pieces (see above)")
    parser.add_argument("--no-gpu", action="store_true", help="skip the GPU section even when CUDA is available")
    parser.add_argument("--data-root", default=os.environ.get("COLLAPSEBENCH_DATA_ROOT", REPO.parent / "shared" / "data"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from avalanche.benchmarks.classic import SplitMNIST  # noqa: F401  (import cost outside the timings)

    from collapsebench.manager import build_manager
    from collapsebench.records import StreamContext
    from collapsebench.registry import Registry

    manager = build_manager()
    registry = Registry(manager)
    stream_record, mlp = registry.get("stream", "split-mnist"), registry.get("architecture", "mlp")
    context = StreamContext(seed=0, scenario="class", data_root=Path(args.data_root))
    experiences = stream_tensors(stream_record.factory(context, **stream_record.option_defaults()).benchmark)
    model_factory = lambda: mlp.factory((1, 28, 28), 10, False, **mlp.option_defaults())  # noqa: E731

    wall = time.perf_counter
    if args.clock == "cpu":
        time.perf_counter = time.thread_time  # every timer below, collapsebench's own included
    try:
        times = measure(args, manager, registry, experiences, model_factory, "cpu")
        pairs_table = paired_epochs(args, manager, registry, experiences, model_factory,
                                    repeats=args.paired_repeats or args.repeats, alone=times)
        if args.ablate:
            pairs_table += "\n" + ablation(args, manager, registry, experiences, model_factory)
        if args.breakdown:
            pairs_table += "\n" + breakdown(args, manager, registry, experiences, model_factory)
    finally:
        time.perf_counter = wall

    n_train = sum(len(t) for _, t in experiences)
    print(f"\nsplit MNIST ({n_train} training images), MLP 784-256-256-10, {args.epochs} epochs, "
          f"batch {args.batch_size}, {torch.get_num_threads()} torch threads; training time ({args.clock} clock), "
          f"median of {args.repeats}")
    print(table(times))
    print(pairs_table)
    if not args.no_gpu:
        gpu_section(args, manager, registry, experiences, model_factory)


if __name__ == "__main__":
    main()
