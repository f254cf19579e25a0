"""The one training loop of mmgen, on Accelerate.

A model family plugs in an *objective*: an `nn.Module` whose forward takes a batch and
returns the loss (a scalar tensor, or a dict with a "loss" entry and other scalars to
log). Putting the loss inside forward keeps DistributedDataParallel correct: gradients
are synchronised only for computation that runs through the wrapped module's forward.
An objective whose loss follows a schedule (a temperature, a ramped weight) defines
`set_step(step)`: the loop calls it with the number of optimizer steps done before each
update, so schedules also continue exactly on resume.

The loop gives every family the same: gradient accumulation, mixed precision, gradient
clipping, LR warmup and schedule, EMA weights, tensorboard logs, a progress bar with
loss and images/s, periodic validation, rotated atomic checkpoints, exact resume, and
multi-process training under `accelerate launch`. On CPUs it keeps freed memory in the
process for the next step (`cpu_memory`), where glibc would hand it back to the kernel
and fault it in again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
import signal
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import ProjectConfiguration, set_seed
from accelerate.utils import load as accelerate_load
from diffusers.configuration_utils import ConfigMixin
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from mmgen.data.collate import collate_examples
from mmgen.data.seeding import derive_seed
from mmgen.data.transforms import captioned_grid, make_grid
from mmgen.errors import CheckpointError, ConfigError, MMGenError
from mmgen.fingerprint import update_with_item
from mmgen.training import checkpoint
from mmgen.training.config import TrainingConfig
from mmgen.training.cpu_memory import keep_freed_memory
from mmgen.training.sampler import ResumableShardedSampler

# How many items, spread over the training data, identify it in a checkpoint (data_digest).
DIGESTED_ITEMS = 8

# Seconds a multi-process run waits, without the GIL, before its process group goes (see train).
GLOO_CLEANUP_PAUSE = 0.2

# validate(objective, step, output_dir) and export(objective, folder) receive the unwrapped
# objective with EMA weights swapped in (when EMA is on).
ValidateFn = Callable[[nn.Module, int, Path], None]
ExportFn = Callable[[nn.Module, Path], None]


class TrainingDiverged(MMGenError):
    """The loss became nan or infinite: the run stops without writing a checkpoint of it."""


@dataclass
class TrainingResult:
    step: int
    losses: list[float] = field(default_factory=list)  # the loss of every optimizer step run here
    last_checkpoint: Path | None = None


class Trainer:
    def __init__(
        self,
        config: TrainingConfig,
        objective: nn.Module,
        train_dataset: Dataset,
        collate_fn: Callable[[list[Any]], Any] = collate_examples,
        validate_fn: ValidateFn | None = None,
        export_fn: ExportFn | None = None,
    ):
        self.config = config
        self.objective = objective
        self.train_dataset = train_dataset
        self.collate_fn = collate_fn
        self.validate_fn = validate_fn
        self.export_fn = export_fn
        self.output_dir = Path(config.output_dir)
        check_output_dir(config)
        self.checkpoint_dir = self.output_dir / "checkpoints"
        self.accelerator = Accelerator(
            cpu=_on_cpu(),
            mixed_precision=config.mixed_precision,
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            log_with=config.report_to if config.report_to not in (None, "none") else None,
            project_config=ProjectConfiguration(project_dir=str(self.output_dir), logging_dir=str(self.output_dir / "logs")),
        )

    def train(self) -> TrainingResult:
        interrupt = _StopOnInterrupt()
        try:
            return self._train(interrupt)
        finally:
            interrupt.restore()

    def _train(self, interrupt: _StopOnInterrupt) -> TrainingResult:
        accelerator = self.accelerator
        if self.config.epochs is not None:
            steps = self.config.steps_for_epochs(len(self.train_dataset), accelerator.num_processes)
            self.config = dataclasses.replace(self.config, max_steps=steps)
        config = self.config
        set_seed(config.seed)
        if accelerator.device.type == "cpu":
            keep_freed_memory()
        trainable = [p for p in self.objective.parameters() if p.requires_grad]
        if not trainable:
            raise ConfigError("the objective has no trainable parameters")
        optimizer = torch.optim.AdamW(
            trainable,
            lr=config.learning_rate,
            betas=(config.adam_beta1, config.adam_beta2),
            weight_decay=config.weight_decay,
        )
        # Accelerate steps a prepared scheduler once per process per optimizer step.
        lr_scheduler = get_scheduler(
            config.lr_scheduler,
            optimizer,
            num_warmup_steps=config.lr_warmup_steps * accelerator.num_processes,
            num_training_steps=config.max_steps * accelerator.num_processes,
        )
        if config.compile:
            # In place (nn.Module.compile), not wrapped in an OptimizedModule: its state
            # dict keeps its keys, so checkpoints resume with or without compiling.
            self.objective.compile(mode=config.compile)
        objective, optimizer, lr_scheduler = accelerator.prepare(self.objective, optimizer, lr_scheduler)
        ema = EMAModel(trainable, decay=config.ema_decay, use_ema_warmup=True) if config.ema_decay else None

        sampler = ResumableShardedSampler(
            len(self.train_dataset), config.seed, accelerator.process_index, accelerator.num_processes
        )
        loader = DataLoader(
            self.train_dataset,
            batch_size=config.batch_size,
            sampler=sampler,
            collate_fn=self.collate_fn,
            num_workers=config.num_workers,
            drop_last=True,
            # Worker seeds come from this generator (re-seeded per epoch), not from the
            # global RNG whose state is checkpointed.
            generator=torch.Generator(),
            worker_init_fn=_ignore_interrupts,
        )
        batches_per_epoch = len(sampler) // config.batch_size
        if batches_per_epoch == 0:
            raise ConfigError(
                f"the dataset ({len(self.train_dataset)} samples) is smaller than one batch "
                f"({config.batch_size} per process x {accelerator.num_processes} processes)"
            )

        data_order = {
            "batch_size": config.batch_size,
            "gradient_accumulation_steps": config.gradient_accumulation_steps,
            "num_processes": accelerator.num_processes,
            "seed": config.seed,
            "dataset_size": len(self.train_dataset),
            # What else decides the batches' contents (e.g. which rows are preserved), as the dataset states it.
            **getattr(self.train_dataset, "resume_settings", {}),
        }
        self._model_configs = model_configs(self.objective)
        self._lora_adapters = lora_adapters(self.objective)
        self._data_digest = data_digest(self.train_dataset)
        step, resumed_from = self._resume(ema, data_order) if config.resume else (0, None)
        self._data_order = data_order
        if accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            config.save(self.output_dir / "training_config.json")
            checkpoint.clean_temporary(self.checkpoint_dir)
        if accelerator.log_with:
            accelerator.init_trackers("mmgen", config={k: str(v) for k, v in config.to_dict().items()})

        result = TrainingResult(step=step, last_checkpoint=resumed_from)
        images_per_step = config.batch_size * accelerator.num_processes * config.gradient_accumulation_steps
        progress = tqdm(
            total=config.max_steps, initial=step, desc="training", disable=not accelerator.is_local_main_process
        )
        epoch, skip = divmod(step * config.gradient_accumulation_steps, batches_per_epoch)
        objective.train()
        micro_losses: list[torch.Tensor] = []
        tic = started = time.perf_counter()
        out_of_time = interrupted = False
        interrupt.arm()
        while step < config.max_steps and not out_of_time:
            sampler.set_epoch(epoch, start=skip * config.batch_size)
            loader.generator.manual_seed(derive_seed(config.seed, "workers", epoch))
            _set_epoch(self.train_dataset, epoch)
            skip = 0
            for batch in loader:
                if hasattr(self.objective, "set_step"):
                    self.objective.set_step(step)
                with accelerator.accumulate(objective):
                    loss, logs = _split_output(objective(_to_device(batch, accelerator.device)))
                    micro_losses.append(loss.detach())
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and config.max_grad_norm:
                        logs["grad_norm"] = accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
                    optimizer.step()
                    lr_scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                if not accelerator.sync_gradients:
                    continue
                step += 1
                if ema is not None:
                    ema.step(trainable)
                # The step's loss (the mean over its micro-batches and processes) and whether any
                # process is past the time budget or interrupted, in one reduction, so that all
                # stop together.
                past_budget = config.max_minutes is not None and time.perf_counter() - started > 60 * config.max_minutes
                flags = [float(past_budget), float(interrupt.requested)]
                reduced = accelerator.reduce(
                    torch.cat([torch.stack(micro_losses).mean()[None], torch.tensor(flags, device=accelerator.device)]),
                    reduction="mean",
                )
                loss_value, interrupted = reduced[0].item(), reduced[2].item() > 0
                out_of_time = reduced[1].item() > 0 or interrupted
                micro_losses = []
                if not math.isfinite(loss_value):
                    kept = checkpoint.list_checkpoints(self.checkpoint_dir)
                    raise TrainingDiverged(
                        f"the loss became {loss_value} at step {step}: training diverged; try a smaller --learning-rate "
                        f"(now {config.learning_rate:g}) or --max-grad-norm; "
                        + (f"{kept[-1].name} is the last checkpoint kept" if kept else "no checkpoint was written")
                    )
                result.losses.append(loss_value)
                toc = time.perf_counter()
                images_per_second = images_per_step / max(toc - tic, 1e-9)
                tic = toc
                progress.update(1)
                progress.set_postfix(loss=f"{loss_value:.4f}", img_s=f"{images_per_second:.1f}")
                if step % config.log_every == 0 or step == config.max_steps:
                    scalars = {k: float(v) for k, v in logs.items()}
                    scalars.update(loss=loss_value, lr=lr_scheduler.get_last_lr()[0], images_per_second=images_per_second)
                    accelerator.log(scalars, step=step)
                if step % config.checkpoint_every == 0 or step == config.max_steps or out_of_time:
                    result.last_checkpoint = self._save(step, ema)
                validate_now = config.validate_every and step % config.validate_every == 0
                if self.validate_fn and validate_now and accelerator.is_main_process:
                    self._with_ema_weights(ema, lambda model: self.validate_fn(model, step, self.output_dir))
                if step >= config.max_steps:
                    break
                if interrupted:
                    accelerator.print(f"\ninterrupted at step {step}: saved; resume with --resume latest")
                    break
                if out_of_time:
                    accelerator.print(f"--max-minutes {config.max_minutes:g} reached at step {step}: saved; resume with --resume latest")
                    break
            epoch += 1
        interrupt.restore()
        progress.close()
        # Gloo destroys finished collectives on its own thread, which needs the GIL to free
        # their Python tensors; when the process group is destroyed (end_training) while that
        # thread still holds the last checkpoint's gather, the destructor, holding the GIL,
        # waits for it forever (3 runs in 8 hung). A barrier, then a pause without the GIL,
        # lets that thread free everything first.
        if accelerator.num_processes > 1:
            accelerator.wait_for_everyone()
            time.sleep(GLOO_CLEANUP_PAUSE)
        accelerator.end_training()
        result.step = step
        if interrupted and step < config.max_steps:  # saved: stop as Ctrl-C does, for the caller to say so
            raise KeyboardInterrupt
        return result

    def _save(self, step: int, ema: EMAModel | None) -> Path:
        """Write a checkpoint atomically. Every process must call this: each saves its RNG
        state. If any process cannot write (a full disk, say), the partial checkpoint is
        removed on every process and the run stops with a CheckpointError that names the
        checkpoints kept."""
        accelerator = self.accelerator
        temporary = checkpoint.temporary_path(self.checkpoint_dir, step)
        error = self._attempt(lambda: accelerator.save_state(str(temporary)))
        if error is None and accelerator.is_main_process:
            error = self._attempt(lambda: self._write_main_process_files(temporary, step, ema))
        failures = accelerator.gather(torch.tensor([error is not None], device=accelerator.device)).sum().item()
        final = self.checkpoint_dir / checkpoint.checkpoint_name(step)
        if failures:
            if accelerator.is_main_process:
                shutil.rmtree(temporary, ignore_errors=True)
            accelerator.wait_for_everyone()
            kept = ", ".join(p.name for p in checkpoint.list_checkpoints(self.checkpoint_dir)) or "none"
            reason = f" ({type(error).__name__}: {error})" if error is not None else " on another process"
            raise CheckpointError(
                f"could not write {final.name} in {self.checkpoint_dir}{reason}; it was removed, the checkpoints kept "
                f"are: {kept}; fix the cause (e.g. free disk space) and continue with --resume latest"
            )
        if accelerator.is_main_process:
            checkpoint.finalize(temporary, step, self.config.keep_last)
        accelerator.wait_for_everyone()
        return final

    def _write_main_process_files(self, temporary: Path, step: int, ema: EMAModel | None) -> None:
        state: dict[str, Any] = {
            "step": step, "data_order": self._data_order, "data_digest": self._data_digest,
            "model_configs": self._model_configs, "lora_adapters": self._lora_adapters,
        }
        if ema is not None:
            ema_state = ema.state_dict()
            shadow = ema_state.pop("shadow_params")
            save_file({f"{i}": p.contiguous() for i, p in enumerate(shadow)}, temporary / "ema.safetensors")
            state["ema"] = ema_state
        (temporary / "trainer_state.json").write_text(json.dumps(state, indent=2) + "\n")
        if self.export_fn:
            self._with_ema_weights(ema, lambda model: self.export_fn(model, temporary / "model"))

    @staticmethod
    def _attempt(action: Callable[[], Any]) -> Exception | None:
        """Run `action`; the error that writing a file may raise (OSError, safetensors' and
        torch's own), or None."""
        try:
            action()
        except (OSError, RuntimeError, SafetensorError) as error:
            return error
        return None

    def _resume(self, ema: EMAModel | None, data_order: dict[str, int]) -> tuple[int, Path | None]:
        """Restore the newest (or the named) checkpoint: (its step, its path)."""
        path = checkpoint.resolve_resume(self.config.resume, self.checkpoint_dir)
        if path is None:
            return 0, None
        state = json.loads((path / "trainer_state.json").read_text())
        if state["step"] > self.config.max_steps:
            raise ConfigError(f"{path} is at step {state['step']}, past this run's {self.config.max_steps} steps: "
                              "give more steps (--max-steps, --epochs) to train on, or another --output-dir to start over")
        saved = state.get("data_order", {})
        changed = {k: (saved[k], v) for k, v in data_order.items() if k in saved and saved[k] != v}
        if changed:
            described = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items())
            raise ConfigError(
                f"{path} was trained with other settings ({described}); resuming would replay other data. "
                "Resume with the original settings, or start a new run in another --output-dir"
            )
        # Older checkpoints did not record it; None: the data could not be digested.
        if None not in (state.get("data_digest"), self._data_digest) and state["data_digest"] != self._data_digest:
            warnings.warn(
                f"{path} was trained on other data with as many items, or other data settings (image size, flips, "
                "caption variants): its items differ from this run's. Training goes on with the data given now; "
                "if that is not meant, stop and resume with the original data and settings",
                stacklevel=2,
            )
        saved = state.get("model_configs", self._model_configs)  # older checkpoints did not record them
        changed = {
            f"{model}.{key}": (saved.get(model, {}).get(key), value)
            for model, config in self._model_configs.items() for key, value in config.items()
            if saved.get(model, {}).get(key) != value
        }
        if changed or saved.keys() != self._model_configs.keys():
            described = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items()) or "other models"
            raise ConfigError(
                f"{path} holds a model with other settings ({described}); resume with the original settings, "
                "or start a new run in another --output-dir"
            )
        saved = state.get("lora_adapters", self._lora_adapters)  # older checkpoints did not record them
        if saved != self._lora_adapters:
            raise ConfigError(
                f"{path} was trained {_with_adapters(saved)}, this run {_with_adapters(self._lora_adapters)}; resume "
                f"{'with the original --lora-rank' if saved else 'without --lora-rank'}, or start a new run in another "
                "--output-dir"
            )
        self._check_random_states(path)
        self.accelerator.load_state(str(path))
        if ema is not None:
            if "ema" not in state:
                raise ConfigError(f"{path} was saved without EMA weights; resume with ema_decay=None")
            # Read on the CPU and moved: safetensors names devices its own way (it rejects "cpu:0").
            shadow = {name: tensor.to(self.accelerator.device) for name, tensor in load_file(path / "ema.safetensors").items()}
            ema.load_state_dict({**state["ema"], "shadow_params": [shadow[f"{i}"] for i in range(len(shadow))]})
        self.accelerator.print(f"resumed from {path} at step {state['step']}")
        return state["step"], path

    def _check_random_states(self, path: Path) -> None:
        """A CheckpointError on every process unless each can read its RNG state: Accelerate
        would note a missing or refused one at info level and go on, and the resumed run
        would silently differ from an uninterrupted one."""
        accelerator = self.accelerator
        name = f"random_states_{accelerator.process_index}.pkl"
        try:
            accelerate_load(path / name)  # as Accelerate reads it
            error = None
        except Exception as exception:  # missing, cut short, or refused by weights_only unpickling
            error = f"{type(exception).__name__}: {(str(exception).strip().splitlines() or [''])[0][:120]}"
        failures = accelerator.gather(torch.tensor([error is not None], device=accelerator.device)).sum().item()
        if failures:
            where = f"{name} ({error})" if error else "another process's random state"
            raise CheckpointError(
                f"{path}: cannot restore {where}, so the run would not continue exactly; resume from another "
                "checkpoint, or start a new run in another --output-dir"
            )

    def _with_ema_weights(self, ema: EMAModel | None, action: Callable[[nn.Module], None]) -> None:
        """Run `action` on the unwrapped objective in eval mode with EMA weights swapped in,
        without disturbing the RNG stream training depends on (so resumes stay exact)."""
        model = self.accelerator.unwrap_model(self.objective)
        parameters = [p for p in model.parameters() if p.requires_grad]
        if ema is not None:
            ema.store(parameters)
            ema.copy_to(parameters)
        model.eval()
        try:
            device = self.accelerator.device
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
                action(model)
        finally:
            model.train()
            if ema is not None:
                ema.restore(parameters)


class _StopOnInterrupt:
    """Between `arm` and `restore`, a first Ctrl-C (SIGINT) only sets `requested`: the loop
    stops after its step with a checkpoint, as with --max-minutes, instead of losing the
    steps since the last one. A second one stops at once, as Python's handler does. SIGINT
    is left alone where it is ignored or handled from outside Python, and off the main
    thread, where no signal arrives."""

    def __init__(self) -> None:
        self.requested = self._installed = False
        self._previous = None

    def arm(self) -> None:
        self._previous = signal.getsignal(signal.SIGINT)
        if threading.current_thread() is threading.main_thread() and callable(self._previous):
            signal.signal(signal.SIGINT, self._request)
            self._installed = True

    def _request(self, signum, frame) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, self._previous)
        tqdm.write("stopping after this step, with a checkpoint (Ctrl-C again to stop at once)")

    def restore(self) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False


def process_state() -> PartialState:
    """This process's place in the run (rank, device, number of processes), as the Trainer's
    Accelerator will see it. Recipes that work before the Trainer (caching latents, say)
    take it from here: the first state made is the one every later one shares, and one made
    without `cpu=True` runs a CPU-only multi-process launch as separate 1-process runs."""
    return PartialState(cpu=_on_cpu())


def _on_cpu() -> bool:
    return not torch.cuda.is_available()


def _ignore_interrupts(worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C to the main process: a worker it killed would fail
    the batch the interrupted step still needs, before the checkpoint is written."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def check_output_dir(config: TrainingConfig) -> None:
    """A ConfigError now, before any work, if `config.output_dir` is not a folder mmgen can
    write in (a file, a read-only filesystem, no permission), or holds an earlier run's
    checkpoints and this run does not resume (it would prune them among its own)."""
    output_dir = Path(config.output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ConfigError(f"output_dir {output_dir}: a file, not a folder")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output_dir, prefix=".write-check-"):
            pass
    except OSError as error:
        raise ConfigError(f"output_dir {output_dir}: cannot write there ({error.strerror or error})") from None
    earlier = checkpoint.list_checkpoints(output_dir / "checkpoints")
    if earlier and not config.resume:
        raise ConfigError(f"{output_dir} already holds a run (checkpoints up to {earlier[-1].name}): continue it with "
                          "--resume latest, or give another --output-dir")


def save_validation_grid(
    images: list, output_dir: Path, step: int, columns: int | None = None, captions: list[str] | None = None
) -> Path:
    """Write a validation's images as `output_dir/samples/step-NNNNNNN.png`, `columns` to a
    row (default: in two rows when there are more than four), each with its caption (its
    prompt) written under it if `captions` are given."""
    path = Path(output_dir) / "samples" / f"step-{step:07d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = columns or (math.ceil(len(images) / 2) if len(images) > 4 else len(images))
    grid = captioned_grid(images, captions, columns=columns) if captions else make_grid(images, columns=columns)
    grid.save(path)
    return path


def _set_epoch(dataset: Dataset, epoch: int) -> None:
    """Tell a dataset, and the datasets a ConcatDataset or Subset wraps, the epoch."""
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    for inner in getattr(dataset, "datasets", ()):
        _set_epoch(inner, epoch)
    if hasattr(dataset, "dataset"):
        _set_epoch(dataset.dataset, epoch)


def data_digest(dataset: Dataset) -> str | None:
    """A digest of a few items spread over `dataset`, as its first epoch gives them: a run
    resumed on other data of the same size (another folder, say) is told so; a few edited
    items may go unseen. None where an item cannot be digested: the check is a courtesy,
    and must not stop a run that would train."""
    digest = hashlib.sha256()
    _set_epoch(dataset, 0)
    try:
        for index in sorted({i * len(dataset) // DIGESTED_ITEMS for i in range(DIGESTED_ITEMS)}):
            update_with_item(digest, dataset[index])
    except (TypeError, ValueError, RuntimeError):
        return None
    return digest.hexdigest()[:16]


def _split_output(output: torch.Tensor | dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
    if isinstance(output, dict):
        logs = {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in output.items() if k != "loss"}
        return output["loss"], logs
    return output, {}


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def lora_adapters(objective: nn.Module) -> dict[str, dict[str, int]]:
    """The LoRA adapters (peft) on the objective's models, as "model adapter": rank and
    alpha; a resumed run must build the same, as their rank shapes the weights."""
    return {
        f"{name or 'objective'} {adapter}": {"rank": settings.r, "alpha": settings.lora_alpha}
        for name, module in objective.named_modules() if isinstance(module, ConfigMixin)
        for adapter, settings in getattr(module, "peft_config", {}).items()
    }


def _with_adapters(adapters: dict[str, dict[str, int]]) -> str:
    """`lora_adapters` as a message says them: "with LoRA adapters of rank 4 on the unet"
    (peft's adapter name only where it is not its "default"), or "without LoRA adapters"."""
    described = []
    for name, settings in adapters.items():
        model, _, adapter = name.rpartition(" ")
        described.append(f"rank {settings['rank']} on the {model}" + ("" if adapter == "default" else f" ({adapter})"))
    return f"with LoRA adapters of {', '.join(described)}" if described else "without LoRA adapters"


def model_configs(objective: nn.Module) -> dict[str, dict[str, Any]]:
    """The registered configs (diffusers' ConfigMixin) of the objective's models, as JSON
    holds them: a resumed run must build the same models, or it trains a model that its
    checkpoint's weights merely fit (e.g. MoPoE's resumed as MVAE)."""
    return {
        name or "objective": json.loads(json.dumps(
            {key: value for key, value in module.config.items() if not key.startswith("_")}, default=str
        ))
        for name, module in objective.named_modules() if isinstance(module, ConfigMixin)
    }
