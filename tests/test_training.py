import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mmgen.errors import CheckpointError, ConfigError
from mmgen.training import TrainingConfig
from mmgen.training.checkpoint import checkpoint_name, list_checkpoints, resolve_resume
from mmgen.training.sampler import ResumableShardedSampler

from tiny_training import NoisyLinearData, make_trainer

SCRIPT = Path(__file__).with_name("tiny_training.py")


def run_script(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=240, **kwargs)


def test_loss_goes_down(tmp_path):
    trainer = make_trainer(tmp_path, max_steps=80, gradient_accumulation_steps=1, checkpoint_every=1000, ema_decay=None)
    losses = trainer.train().losses
    assert len(losses) == 80
    assert sum(losses[-10:]) / 10 < 0.25 * sum(losses[:10]) / 10


def test_checkpoints_rotate_and_hold_ema_and_export(tmp_path):
    exported = []

    def export(model, folder):
        folder.mkdir(parents=True)
        (folder / "weights.txt").write_text(str(model.net[0].weight.sum().item()))
        exported.append(folder)

    trainer = make_trainer(tmp_path, max_steps=7, checkpoint_every=3, keep_last=2)
    trainer.export_fn = export
    result = trainer.train()
    names = [p.name for p in list_checkpoints(tmp_path / "checkpoints")]
    # steps 3 and 6 by schedule, 7 at the end; only the last two are kept
    assert names == [checkpoint_name(6), checkpoint_name(7)]
    assert result.last_checkpoint == tmp_path / "checkpoints" / checkpoint_name(7)
    last = result.last_checkpoint
    assert json.loads((last / "trainer_state.json").read_text())["step"] == 7
    # the export saw the EMA weights, which differ from the raw trained weights
    raw = load_file(last / "model.safetensors")["net.0.weight"].sum().item()
    ema = load_file(last / "ema.safetensors")["0"].sum().item()
    assert float((last / "model" / "weights.txt").read_text()) == pytest.approx(ema, abs=1e-4)
    assert ema != pytest.approx(raw, abs=1e-4)
    assert not list((tmp_path / "checkpoints").glob(".*.tmp"))


def test_validation_hook_does_not_change_training(tmp_path):
    calls = []

    def validate(model, step, output_dir):
        assert not model.training
        torch.randn(100)  # consumes RNG: must not leak into training
        calls.append(step)

    plain = make_trainer(tmp_path / "plain", max_steps=6).train()
    trainer = make_trainer(tmp_path / "validated", max_steps=6, validate_every=2)
    trainer.validate_fn = validate
    validated = trainer.train()
    assert calls == [2, 4, 6]
    assert validated.losses == plain.losses


# 8 batches per epoch, 3 per optimizer step: accumulations straddle epoch boundaries
INTERRUPTED_RUN = ("--num-workers", "2", "--accumulation", "3")


def _run_to_interrupt(tmp_path: Path, step_delay: float, started_when: int) -> subprocess.Popen:
    """An uninterrupted run in tmp_path/straight, then one started in tmp_path/interrupted (in
    its own process group, as a terminal's job) and returned once it wrote checkpoint
    `started_when`."""
    straight = run_script("--out", str(tmp_path / "straight"), *INTERRUPTED_RUN)
    assert straight.returncode == 0, straight.stderr
    out = tmp_path / "interrupted"
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--out", str(out), "--step-delay", str(step_delay), *INTERRUPTED_RUN],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        # Ctrl-C handled as in a terminal, even where this runs as a background job (which ignores it)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 120
    while not (out / "checkpoints" / checkpoint_name(started_when)).exists():
        assert process.poll() is None, "training ended before it could be interrupted"
        assert time.time() < deadline
        time.sleep(0.05)
    return process


def test_kill_and_resume_equals_uninterrupted(tmp_path):
    process = _run_to_interrupt(tmp_path, step_delay=0.1, started_when=6)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    out = tmp_path / "interrupted"
    assert not (out / "checkpoints" / checkpoint_name(12)).exists()

    resumed = run_script("--out", str(out), "--resume", "latest", *INTERRUPTED_RUN)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout + resumed.stderr
    for name in ("final-rank0.safetensors", f"checkpoints/{checkpoint_name(12)}/ema.safetensors"):
        expected, actual = load_file(tmp_path / "straight" / name), load_file(out / name)
        assert expected.keys() == actual.keys()
        for key in expected:
            torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=0)


def test_ctrl_c_stops_after_the_step_with_a_checkpoint_that_resumes_exactly(tmp_path):
    process = _run_to_interrupt(tmp_path, step_delay=0.2, started_when=3)
    os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the workers get it too
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode != 0 and "KeyboardInterrupt" in stderr and "Traceback" in stderr
    out = tmp_path / "interrupted"
    stopped = int(stdout.split("interrupted at step ")[1].split(":")[0])
    assert 3 < stopped < 12 and (out / "checkpoints" / checkpoint_name(stopped)).is_dir()  # saved where it stopped

    resumed = run_script("--out", str(out), "--resume", "latest", *INTERRUPTED_RUN)
    assert resumed.returncode == 0, resumed.stderr
    assert f"checkpoint-{stopped:07d} at step {stopped}" in resumed.stdout + resumed.stderr
    expected, actual = load_file(tmp_path / "straight" / "final-rank0.safetensors"), load_file(out / "final-rank0.safetensors")
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=0)


def test_compiled_objective_trains_and_its_checkpoints_resume_eagerly(tmp_path):
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled = make_trainer(tmp_path, max_steps=40, gradient_accumulation_steps=1, compile="default", ema_decay=None)
    losses = compiled.train().losses
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # the forward went through dynamo
    assert sum(losses[-10:]) < 0.25 * sum(losses[:10])
    eager = make_trainer(tmp_path / "eager", max_steps=1, gradient_accumulation_steps=1, ema_decay=None)
    eager.train()
    checkpoints = [list_checkpoints(folder / "checkpoints")[-1] / "model.safetensors" for folder in (tmp_path, tmp_path / "eager")]
    assert load_file(checkpoints[0]).keys() == load_file(checkpoints[1]).keys()
    resumed = make_trainer(tmp_path, max_steps=42, gradient_accumulation_steps=1, ema_decay=None, resume="latest").train()
    assert resumed.losses and resumed.losses[0] < 0.25 * losses[0]


def test_resume_latest_without_checkpoint_starts_fresh(tmp_path):
    result = make_trainer(tmp_path, max_steps=2, resume="latest").train()
    assert result.step == 2


def test_resuming_a_finished_run_does_nothing(tmp_path):
    first = make_trainer(tmp_path, max_steps=3).train()
    again = make_trainer(tmp_path, max_steps=3, resume="latest").train()
    assert again.step == 3 and again.losses == [] and again.last_checkpoint == first.last_checkpoint
    saved = (tmp_path / "training_config.json").read_text()
    with pytest.raises(ConfigError, match=r"checkpoint-0000003 is at step 3, past this run's 2 steps: give more steps"):
        make_trainer(tmp_path, max_steps=2, resume="latest").train()
    assert (tmp_path / "training_config.json").read_text() == saved  # the run's settings are left as they were


def test_a_new_run_refuses_a_folder_holding_an_earlier_run(tmp_path, monkeypatch, capsys):
    make_trainer(tmp_path, max_steps=6, keep_last=None).train()
    # A new run would overwrite its settings and prune the earlier checkpoints among its own.
    with pytest.raises(ConfigError, match=r"already holds a run \(checkpoints up to checkpoint-0000006\): continue it "
                       "with --resume latest, or give another --output-dir"):
        make_trainer(tmp_path, max_steps=4, keep_last=1)
    assert make_trainer(tmp_path, max_steps=6, resume="latest").train().step == 6
    # The command line says so before a recipe loads data or encodes captions.
    import mmgen.diffusion.training
    from mmgen.cli import main

    recipes_run = []
    monkeypatch.setattr(mmgen.diffusion.training, "train_autoencoder", lambda *a, **k: recipes_run.append(a))
    assert main(["train", "autoencoder", "--output-dir", str(tmp_path), "--report-to", "none"]) == 2
    assert "already holds a run" in capsys.readouterr().err and recipes_run == []


def test_resume_refuses_settings_that_change_the_data_order(tmp_path):
    make_trainer(tmp_path, max_steps=3).train()
    with pytest.raises(ConfigError, match="batch_size 8 -> 4"):
        make_trainer(tmp_path, max_steps=6, batch_size=4, resume="latest").train()
    with pytest.raises(ConfigError, match="gradient_accumulation_steps 2 -> 1"):
        make_trainer(tmp_path, max_steps=6, gradient_accumulation_steps=1, resume="latest").train()


def test_resuming_on_other_data_of_the_same_size_is_said(tmp_path, recwarn):
    make_trainer(tmp_path, max_steps=3).train()
    make_trainer(tmp_path, max_steps=6, resume="latest").train()
    assert not [w for w in recwarn if "other data" in str(w.message)]
    other = NoisyLinearData()
    other.y += 1  # the same inputs with other targets
    with pytest.warns(UserWarning, match="trained on other data with as many items, or other data settings"):
        make_trainer(tmp_path, max_steps=9, resume="latest", data=other).train()


def test_resuming_from_an_earlier_checkpoint_refuses_to_mix_with_later_ones(tmp_path):
    make_trainer(tmp_path, max_steps=6, keep_last=None).train()
    checkpoints = tmp_path / "checkpoints"
    with pytest.raises(CheckpointError, match=r"already holds later checkpoints \(checkpoint-0000006\)"):
        make_trainer(tmp_path, max_steps=4, resume=str(checkpoints / "checkpoint-0000003")).train()
    assert [p.name for p in list_checkpoints(checkpoints)] == ["checkpoint-0000003", "checkpoint-0000006"]
    resumed = make_trainer(tmp_path / "branch", max_steps=4, resume=str(checkpoints / "checkpoint-0000003")).train()
    assert resumed.step == 4


def test_an_output_dir_that_is_a_file_is_named(tmp_path):
    (tmp_path / "run").write_text("")
    with pytest.raises(ConfigError, match="run: a file, not a folder"):
        make_trainer(tmp_path / "run")


def test_resume_from_a_folder_that_is_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not an mmgen training checkpoint"):
        resolve_resume(str(tmp_path), tmp_path)


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"mixed_precision": "fp8"}, "mixed_precision"),
        ({"keep_last": 0}, "keep_last"),
        ({"compile": "fast"}, "compile must be none or one of default"),
        ({"ema_decay": 1.5}, "ema_decay"),
        ({"learning_rate": -1.0}, "learning_rate must be above 0, got -1.0"),
        ({"max_grad_norm": 0.0}, "max_grad_norm must be above 0 .or none"),
        ({"num_workers": -1}, "num_workers must be 0 or more, got -1"),
        ({"lr_scheduler": "bogus"}, "unknown lr_scheduler 'bogus'"),
        ({"report_to": "paper"}, "unknown report_to 'paper'"),
        ({"max_steps": 2.5}, "max_steps must be a whole number, got float 2.5"),  # trained, never checkpointed
        ({"batch_size": "4"}, "batch_size must be a whole number, got str '4'"),
        ({"ema_decay": "none"}, r"ema_decay must be a number \(or none\), got str"),
        ({"adam_beta1": 1.5}, r"adam_beta1 must be in \[0, 1\), got 1.5"),
        ({"lr_warmup_steps": -1}, "lr_warmup_steps must be 0 or more"),
        ({"validate_every": 0}, "validate_every must be at least 1"),
    ],
)
def test_bad_settings_are_named(setting, message):
    with pytest.raises(ConfigError, match=message):
        TrainingConfig(output_dir="x", **setting)


def test_settings_from_numpy_and_paths_are_taken_as_python_values(tmp_path):
    import numpy as np

    config = TrainingConfig(output_dir=tmp_path / "run", max_steps=np.int64(5), learning_rate=np.float32(0.5), resume=None)
    assert (config.output_dir, config.max_steps, config.learning_rate) == (str(tmp_path / "run"), 5, 0.5)
    assert type(config.max_steps) is int and type(config.learning_rate) is float  # JSON writes them
    json.dumps(config.to_dict())


def test_set_epoch_reaches_wrapped_datasets(tmp_path):
    from torch.utils.data import ConcatDataset, Subset

    from tiny_training import NoisyLinearData

    inner, wrapped = NoisyLinearData(), NoisyLinearData()
    trainer = make_trainer(tmp_path, max_steps=9, gradient_accumulation_steps=1)
    trainer.train_dataset = ConcatDataset([inner, Subset(wrapped, range(64))])
    trainer.train()  # 128 samples, batch 8: 16 steps per epoch; 9 steps stay in epoch 0
    assert inner.epoch == wrapped.epoch == 0
    trainer = make_trainer(tmp_path / "long", max_steps=20, gradient_accumulation_steps=1)
    trainer.train_dataset = ConcatDataset([inner, Subset(wrapped, range(64))])
    trainer.train()
    assert inner.epoch == wrapped.epoch == 1


def test_dataset_smaller_than_a_batch(tmp_path):
    with pytest.raises(ConfigError, match="smaller than one batch"):
        make_trainer(tmp_path, batch_size=1000).train()


def test_sampler_shards_disjointly_and_resumes_mid_epoch():
    shards = [ResumableShardedSampler(10, seed=3, rank=r, world_size=2) for r in range(2)]
    for sampler in shards:
        sampler.set_epoch(1)
    first, second = list(shards[0]), list(shards[1])
    assert len(first) == len(second) == 5 and not set(first) & set(second)
    assert sorted(first + second) == list(range(10))
    shards[0].set_epoch(2)
    assert list(shards[0]) != first  # reshuffled each epoch
    shards[0].set_epoch(1, start=3)
    assert list(shards[0]) == first[3:]


@pytest.mark.slow
def test_two_processes_synchronise(tmp_path):
    report = tmp_path / "report"
    # 64 samples, 2 ranks, batch 8, accumulation 2: one epoch is 2 optimizer steps
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        str(SCRIPT), "--out", str(tmp_path / "run"), "--steps", "2", "--report", str(report),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert completed.returncode == 0, completed.stderr[-3000:]
    ranks = [json.loads(Path(f"{report}.rank{r}.json").read_text()) for r in range(2)]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert all(r["world_size"] == 2 for r in ranks)
    # each rank trained on its own half of the data ...
    assert not set(ranks[0]["seen_indices"]) & set(ranks[1]["seen_indices"])
    assert sorted(ranks[0]["seen_indices"] + ranks[1]["seen_indices"]) == list(range(64))
    # ... yet gradients were averaged, so the weights are identical on both
    assert ranks[0]["weights"] == ranks[1]["weights"]
    assert ranks[0]["losses"] == ranks[1]["losses"]


def test_scalars_reach_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    make_trainer(tmp_path, max_steps=4, log_every=2, report_to="tensorboard").train()
    event_files = list((tmp_path / "logs").rglob("events.out.tfevents.*"))
    assert event_files
    events = EventAccumulator(str(event_files[0].parent))
    events.Reload()
    assert {"loss", "lr", "images_per_second", "prediction_mean"} <= set(events.Tags()["scalars"])
    assert [event.step for event in events.Scalars("loss")] == [2, 4]


# Page faults of allocating 64 MiB again after freeing it: before and after keep_freed_memory.
REALLOCATION_FAULTS = """
import json, resource, torch
from mmgen.training.cpu_memory import keep_freed_memory

def faults_of_reallocating():
    torch.ones(1 << 24)  # 64 MiB, written and freed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(1 << 24)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

default = faults_of_reallocating()
took = keep_freed_memory()
faults_of_reallocating()  # the heap grows to hold it once
print(json.dumps({"default": default, "took": took, "kept": faults_of_reallocating()}))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="sets glibc's malloc")
def test_keep_freed_memory_stops_refaulting_reallocations():
    # In a fresh process: the setting is process-wide and the loop applies it on CPUs.
    completed = subprocess.run([sys.executable, "-c", REALLOCATION_FAULTS], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-3000:]
    faults = json.loads(completed.stdout)
    if faults["default"] < 1000:
        pytest.skip(f"this C library already reuses freed memory ({faults['default']} faults)")
    assert faults["took"]
    assert faults["kept"] < faults["default"] / 10, faults


# --- resume under faults ------------------------------------------------------------------


def _weights(run: Path, step: int) -> dict[str, torch.Tensor]:
    folder = run / "checkpoints" / checkpoint_name(step)
    return {**load_file(folder / "model.safetensors"), **{f"ema.{k}": v for k, v in load_file(folder / "ema.safetensors").items()}}


def _assert_same_weights(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert actual.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=0)


@pytest.mark.slow
def test_two_processes_killed_and_resumed_with_ema_end_as_an_uninterrupted_run(tmp_path):
    def launch(out: Path, *extra: str, **popen) -> subprocess.Popen:
        command = [
            sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            str(SCRIPT), "--out", str(out), "--steps", "12", "--accumulation", "1", *extra,
        ]
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)

    straight = launch(tmp_path / "straight")
    assert straight.wait(timeout=240) == 0, straight.stdout.read()[-3000:]
    out = tmp_path / "interrupted"
    process = launch(out, "--step-delay", "0.15", start_new_session=True)
    deadline = time.time() + 180
    while not (out / "checkpoints" / checkpoint_name(6)).exists():
        assert process.poll() is None, process.stdout.read()[-3000:]
        assert time.time() < deadline
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the launcher, and the ranks if they share its session
    process.wait()
    _kill_processes_naming(out)  # torchrun may start the ranks in sessions of their own
    assert not (out / "checkpoints" / checkpoint_name(12)).exists()
    resumed = launch(out, "--resume", "latest")
    output = resumed.communicate(timeout=240)[0]
    assert resumed.returncode == 0, output[-3000:]
    assert "resumed from" in output
    _assert_same_weights(_weights(out, 12), _weights(tmp_path / "straight", 12))
    for rank in (0, 1):
        _assert_same_weights(load_file(out / f"final-rank{rank}.safetensors"),
                             load_file(tmp_path / "straight" / f"final-rank{rank}.safetensors"))


def _kill_processes_naming(path: Path) -> None:
    import psutil

    for running in psutil.process_iter(["cmdline"]):
        if str(path) in " ".join(running.info["cmdline"] or []):
            running.kill()


def _damage(folder: Path, how: str) -> None:
    if how == "no trainer_state.json":
        (folder / "trainer_state.json").unlink()
    elif how == "no optimizer.bin":
        (folder / "optimizer.bin").unlink()
    else:  # a model.safetensors cut short
        weights = folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:-64])


@pytest.mark.parametrize("how", ["no trainer_state.json", "no optimizer.bin", "truncated model.safetensors"])
def test_resume_latest_passes_over_a_damaged_newest_checkpoint_and_names_it(tmp_path, how):
    straight = make_trainer(tmp_path / "straight", max_steps=9, keep_last=None)
    straight.train()
    run = tmp_path / "run"
    make_trainer(run, max_steps=6, keep_last=None).train()
    _damage(run / "checkpoints" / checkpoint_name(6), how)
    with pytest.warns(UserWarning, match=r"resuming from checkpoint-0000003: the newer checkpoint-0000006 is damaged"):
        resumed = make_trainer(run, max_steps=9, keep_last=None, resume="latest").train()
    assert resumed.step == 9
    _assert_same_weights(_weights(run, 9), _weights(tmp_path / "straight", 9))
    _assert_same_weights(_weights(run, 6), _weights(tmp_path / "straight", 6))  # rewritten whole


def test_damaged_checkpoints_that_leave_nothing_to_resume_are_named(tmp_path):
    make_trainer(tmp_path, max_steps=3).train()
    _damage(tmp_path / "checkpoints" / checkpoint_name(3), "truncated model.safetensors")
    with pytest.raises(CheckpointError, match=r"no complete checkpoint to resume from: checkpoint-0000003 is damaged "
                                              r"\(model.safetensors is damaged"):
        make_trainer(tmp_path, max_steps=6, resume="latest").train()
    with pytest.raises(CheckpointError, match=r"checkpoint-0000003: the checkpoint is damaged"):
        resolve_resume(str(tmp_path / "checkpoints" / checkpoint_name(3)), tmp_path / "checkpoints")


@pytest.mark.parametrize("how", ["garbage", "missing"])
def test_a_random_state_that_cannot_be_restored_stops_the_resume(tmp_path, how):
    make_trainer(tmp_path, max_steps=3).train()
    state = tmp_path / "checkpoints" / checkpoint_name(3) / "random_states_0.pkl"
    if how == "garbage":
        state.write_bytes(b"not a pickle at all")
        message = r"cannot restore random_states_0.pkl .*would not continue exactly"
    else:
        state.unlink()
        message = r"random_states_0.pkl is missing"
    with pytest.raises(CheckpointError, match=message):
        make_trainer(tmp_path, max_steps=6, resume="latest").train()


def test_a_diverging_run_stops_with_the_step_and_writes_no_checkpoint(tmp_path):
    from mmgen.training.trainer import TrainingDiverged

    with pytest.raises(TrainingDiverged, match=r"the loss became (nan|inf) at step \d+: .*smaller --learning-rate \(now 1e\+30\)"):
        make_trainer(tmp_path, max_steps=12, learning_rate=1e30, ema_decay=None, max_grad_norm=None,
                     checkpoint_every=1).train()
    names = [p.name for p in list_checkpoints(tmp_path / "checkpoints")]
    for name in names:  # every checkpoint written holds finite weights
        assert all(torch.isfinite(t).all() for t in load_file(tmp_path / "checkpoints" / name / "model.safetensors").values())


def test_a_checkpoint_that_cannot_be_written_is_removed_and_the_kept_ones_named(tmp_path, monkeypatch):
    import errno

    from safetensors import torch as safetensors_torch

    trainer = make_trainer(tmp_path, max_steps=9, keep_last=None)
    real_save = safetensors_torch.save_file
    calls = []

    def disk_full_at_step_6(tensors, filename, *args, **kwargs):
        calls.append(filename)
        if "checkpoint-0000006" in str(filename):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(tensors, filename, *args, **kwargs)

    monkeypatch.setattr("mmgen.training.trainer.save_file", disk_full_at_step_6)
    monkeypatch.setattr("accelerate.utils.other.save_file", disk_full_at_step_6, raising=False)
    with pytest.raises(CheckpointError, match=r"could not write checkpoint-0000006 .*No space left on device.*kept are: "
                                              r"checkpoint-0000003; .*--resume latest"):
        trainer.train()
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["checkpoint-0000003"]
    assert not list((tmp_path / "checkpoints").glob(".*.tmp"))
    monkeypatch.undo()
    assert make_trainer(tmp_path, max_steps=9, keep_last=None, resume="latest").train().step == 9


def test_an_output_dir_that_cannot_be_written_is_named_before_any_work():
    with pytest.raises(ConfigError, match=r"output_dir /proc/mmgen-run: cannot write there"):
        make_trainer("/proc/mmgen-run")


def test_max_minutes_stops_with_a_checkpoint_that_resumes_to_the_uninterrupted_run(tmp_path):
    straight = make_trainer(tmp_path / "straight").train()
    # 0.05 s per micro-batch, two per step: a 0.6 s budget ends the run a few steps in.
    stopped = make_trainer(tmp_path / "budget", step_delay=0.05, max_minutes=0.01, checkpoint_every=100).train()
    assert 1 <= stopped.step < 12 and stopped.last_checkpoint.name == checkpoint_name(stopped.step)
    resumed = make_trainer(tmp_path / "budget", resume="latest", checkpoint_every=100).train()
    assert resumed.step == 12
    assert stopped.losses + resumed.losses == straight.losses


def test_the_data_digest_reads_text_arrays_and_leaves_out_what_differs_from_run_to_run():
    from mmgen.training.trainer import data_digest

    def items(words):
        return [{"words": np.array(words), "tags": {"b", "a"}, "thing": object(), "text": "é"} for _ in range(3)]

    assert data_digest(items(["a", "b"])) == data_digest(items(["a", "b"])) != data_digest(items(["a", "c"]))
