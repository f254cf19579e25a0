import argparse
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmgen.data import ShapesDataset
from mmgen.errors import ConfigError
from mmgen.cli import add_training_arguments, main, training_config_from_args


def test_help_lists_the_commands():
    mmgen = Path(sys.executable).with_name("mmgen")  # the installed console script
    assert mmgen.is_file()
    completed = subprocess.run([str(mmgen), "--help"], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0
    listed = {line.split()[0] for line in completed.stdout.splitlines() if line.startswith("    ")}
    assert {"data", "train", "sample", "eval"} <= listed
    completed = subprocess.run([str(mmgen), "data", "shapes", "--help"], capture_output=True, text=True, timeout=120)
    assert "--split" in completed.stdout and "(default: train)" in completed.stdout


def test_data_shapes_writes_an_image_folder(tmp_path, capsys):
    assert main(["data", "shapes", "--out", str(tmp_path), "--split", "test", "--n", "3", "--size", "16"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    assert set(rows[0]) == {"file_name", "text", "shape", "color", "size", "position"}
    assert Image.open(tmp_path / rows[0]["file_name"]).size == (16, 16)


def test_data_preview_and_check_read_a_user_folder(tmp_path, capsys):
    folder = tmp_path / "data"
    assert main(["data", "shapes", "--out", str(folder), "--n", "4", "--size", "16"]) == 0
    out = tmp_path / "grid.png"
    capsys.readouterr()
    assert main(["data", "preview", str(folder), "--n", "4", "--size", "16", "--out", str(out)]) == 0
    first = capsys.readouterr().out.splitlines()[:4]
    # 2 x 2 captioned tiles (200 px wide, the 16 px image at double size above two lines of text), 2 px padding
    assert Image.open(out).size == (2 * 200 + 3 * 2, 2 * (32 + 26) + 3 * 2)
    assert [line.split()[0] for line in first] == ["0", "1", "2", "3"]
    assert main(["data", "preview", "shapes", "--n", "3", "--shuffle", "--seed", "1", "--out", str(out)]) == 0
    shown = [int(line.split()[0]) for line in capsys.readouterr().out.splitlines()[:3]]
    assert shown == sorted(shown) and max(shown) > 3  # drawn from the whole split, not its first three
    assert main(["data", "check", str(folder), "--size", "16"]) == 0
    out = capsys.readouterr().out
    assert "4 usable examples, 0 skipped" in out and "upscaled" not in out
    Image.open(folder / "000002.png").resize((12, 9)).save(folder / "000002.png")  # an icon smaller than the rest
    assert main(["data", "check", str(folder), "--size", "16"]) == 0
    assert (f"1 of 4 images have a side under 16 px and are upscaled to it, blurrier than the rest (the smallest: "
            f"12 x 9, {folder.resolve() / '000002.png'})") in capsys.readouterr().out
    assert main(["data", "check", str(folder), "--size", "8"]) == 0
    assert "upscaled" not in capsys.readouterr().out

    (folder / "000001.png").write_bytes(b"not a png")
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "check", str(folder), "--size", "16"])
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert "000001.png" in out and "3 usable examples, 1 skipped" in out


def test_data_check_lists_uncaptioned_entries_without_failing(tmp_path, capsys):
    folder = tmp_path / "data"
    assert main(["data", "shapes", "--out", str(folder), "--n", "3", "--size", "16"]) == 0
    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    rows[1]["text"] = ""  # the multimodal VAEs train on its image; text-to-image training skips it
    (folder / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    capsys.readouterr()
    assert main(["data", "check", str(folder), "--size", "16"]) == 0
    out = capsys.readouterr().out
    assert f"no caption  {folder.resolve() / rows[1]['file_name']}" in out
    assert "2 usable examples, 0 skipped, 1 without a caption or image" in out
    assert main(["data", "preview", str(folder), "--n", "3", "--size", "16", "--out", str(tmp_path / "p.png")]) == 0
    assert "    1  (no caption)" in capsys.readouterr().out  # shown as it is, as data check lists it
    (folder / "metadata.jsonl").write_text("".join(json.dumps({**row, "text": ""}) + "\n" for row in rows))
    assert main(["data", "check", str(folder), "--size", "16"]) == 0
    out = capsys.readouterr().out  # one line, not one per entry
    assert "3 examples, none with a caption: data for the multimodal VAEs" in out and "no caption  " not in out


def test_data_encode_text_fills_the_cache_once(tmp_path, capsys):
    arguments = ["data", "encode-text", "shapes:val", "--n", "20", "--cache-dir", str(tmp_path)]
    assert main(arguments) == 0
    first = capsys.readouterr().out
    assert main(arguments) == 0
    second = capsys.readouterr().out
    distinct = len(set(ShapesDataset("val", n=20).captions()))
    assert first.startswith(f"{distinct} new caption encodings, {distinct} in")
    assert second.startswith("0 new caption encodings")


def test_user_errors_are_one_line_without_traceback(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "mmgen.cli", "data", "preview", str(tmp_path / "missing")],
        capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip() == f"mmgen: error: {tmp_path / 'missing'}: no such folder"


def test_output_into_a_closed_pipe_stops_quietly(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "mmgen.cli", "data", "preview", "shapes:val", "--n", "4", "--size", "16", "--out",
         str(tmp_path / "p.png")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    process.stdout.close()  # as `| head` does once it has read enough
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 1 and stderr == ""


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["data", "shapes", "--out", "x", "--size", "8"], "at least 16 pixels"),
        (["data", "preview", "shapes:nope"], "unknown Shapes split 'nope'"),
    ],
)
def test_bad_values_name_the_problem(arguments, message, capsys):
    assert main(arguments) == 2
    assert message in capsys.readouterr().err


def test_a_missing_validation_prompts_file_is_named_not_drawn(tmp_path, capsys):
    missing = tmp_path / "myprompts.txt"
    assert main(["train", "ldm", "--output-dir", str(tmp_path / "run"), "--max-steps", "1", "--report-to", "none",
                 "--validation-prompts", str(missing)]) == 2
    assert f"--validation-prompts {missing}: no such file" in capsys.readouterr().err


def test_training_flags_cover_the_config(tmp_path):
    parser = argparse.ArgumentParser()
    add_training_arguments(parser)
    args = parser.parse_args(
        ["--output-dir", "run", "--max-steps", "7", "--ema-decay", "none", "--learning-rate", "3e-4", "--resume", "latest"]
    )
    config = training_config_from_args(args)
    assert (config.output_dir, config.max_steps, config.ema_decay, config.learning_rate) == ("run", 7, None, 3e-4)
    assert config.resume == "latest" and config.batch_size == 32  # defaults kept
    with pytest.raises(SystemExit):
        parser.parse_args(["--output-dir", "run", "--max-steps", "seven"])
    run = ["--output-dir", str(tmp_path)]
    assert training_config_from_args(parser.parse_args(run)).max_steps == 1000
    assert training_config_from_args(parser.parse_args([*run, "--epochs", "2"])).epochs == 2
    with pytest.raises(ConfigError, match="give --max-steps or --epochs, not both"):  # one would be ignored
        training_config_from_args(parser.parse_args([*run, "--epochs", "2", "--max-steps", "3"]))


def test_a_data_error_from_a_loader_worker_is_one_line():
    from mmgen.cli import _one_line
    from mmgen.errors import DataError

    worker = DataError(
        "Caught DataError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\nmmgen.errors.DataError: /data/a.png: cannot read image\n'
    )
    assert _one_line(worker) == "/data/a.png: cannot read image"
    assert _one_line(DataError("plain message")) == "plain message"


def test_preview_needs_at_least_one_image(capsys):
    assert main(["data", "preview", "shapes", "--n", "0"]) == 2
    assert "--n must be at least 1" in capsys.readouterr().err


# -- bad inputs to sample, impute and eval: exit status 2 and one line naming the problem --


def _copy_checkpoint(name: str, to: Path) -> Path:
    import shutil

    from mmgen.checkpoints import CHECKPOINTS_DIR

    return Path(shutil.copytree(CHECKPOINTS_DIR / name, to / name))


def _truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[:1000])


def _damaged_pipeline(tmp_path: Path, damage: str) -> Path:
    folder = _copy_checkpoint("shapes-ldm", tmp_path)
    if damage == "truncated":
        _truncate(folder / "unet" / "diffusion_pytorch_model.safetensors")
    elif damage == "missing component":
        import shutil

        shutil.rmtree(folder / "vae")
    elif damage == "pickled weights":
        weights = folder / "vae" / "diffusion_pytorch_model.safetensors"
        weights.rename(weights.with_suffix(".bin"))
    elif damage == "index not JSON":
        (folder / "model_index.json").write_text("{not json")
    return folder


@pytest.mark.parametrize(
    "damage, message",
    [
        ("truncated", "damaged or incomplete checkpoint (Unable to load weights"),
        ("missing component", "incomplete pipeline, its vae/ folder is missing"),
        ("pickled weights", "no .safetensors weights (found diffusion_pytorch_model.bin); mmgen loads safetensors only"),
        ("index not JSON", "model_index.json: not a readable JSON config"),
    ],
)
@pytest.mark.parametrize("command", ["sample", "eval"])
def test_a_damaged_pipeline_is_one_line(tmp_path, capsys, damage, message, command):
    folder = _damaged_pipeline(tmp_path, damage)
    if command == "sample":
        arguments = ["sample", "a red star", "-n", "1", "--model", str(folder), "--out", str(tmp_path / "o.png")]
    else:
        arguments = ["eval", "--task", "text-to-image", "--model", str(folder), "--n", "2", "--out", str(tmp_path / "o.json")]
    assert main(arguments) == 2
    err = capsys.readouterr().err
    assert err.startswith("mmgen: error: ") and err.count("\n") == 1 and message in err
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "o.json").exists()


def test_lora_adapters_of_another_pipeline_are_one_line_naming_the_shapes(tmp_path, capsys):
    from mmgen.checkpoints import CHECKPOINTS_DIR

    assert main(["sample", "a red heart", "--model", str(CHECKPOINTS_DIR / "emoji-ldm"), "--lora",
                 str(CHECKPOINTS_DIR / "shapes-heart-lora"), "--out", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mmgen: error: ") and err.count("\n") == 1, err[:300]
    assert "LoRA weights for another pipeline's UNet (" in err and "[8, 64] in the adapters, [8, 128] in the UNet" in err


def test_a_training_checkpoint_folder_points_at_its_model(tmp_path, capsys):
    checkpoint = tmp_path / "checkpoints" / "checkpoint-0000010"
    (checkpoint / "model").mkdir(parents=True)
    (checkpoint / "model" / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    assert main(["sample", "a red star", "--model", str(checkpoint), "--out", str(tmp_path / "o.png")]) == 2
    assert f"(no model_index.json); did you mean {checkpoint / 'model'}?" in capsys.readouterr().err
    from mmgen.checkpoints import CHECKPOINTS_DIR  # adapters given as the pipeline

    assert main(["sample", "a red heart", "--model", str(CHECKPOINTS_DIR / "shapes-heart-lora"), "--out",
                 str(tmp_path / "o.png")]) == 2
    assert (f"; {CHECKPOINTS_DIR / 'shapes-heart-lora'} holds LoRA adapters, to apply to the pipeline they were "
            "trained on (`mmgen sample --lora`, `pipe.load_lora`)\n") in capsys.readouterr().err


def test_a_damaged_multimodal_vae_is_one_line(tmp_path, capsys):
    folder = _copy_checkpoint("shapes-mopoe", tmp_path)
    _truncate(folder / "diffusion_pytorch_model.safetensors")
    assert main(["impute", "--model", str(folder), "--text", "a red star", "--out", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "shapes-mopoe: damaged or incomplete checkpoint" in err


def _sample(tmp_path: Path, *arguments: str) -> list[str]:
    """`mmgen sample` with `arguments`, prompting "a red star" unless they start with a prompt."""
    prompt = [] if arguments and not arguments[0].startswith("-") else ["a red star"]
    return ["sample", *prompt, *arguments, "--out", str(tmp_path / "o.png")]


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--guidance-scale", "nan"], "--guidance-scale must be a finite number >= 0, got nan"),
        (["--guidance-scale", "inf"], "--guidance-scale must be a finite number >= 0, got inf"),
        (["--guidance-scale", "-1"], "--guidance-scale must be a finite number >= 0, got -1.0"),
        (["-n", "100000"], "1 prompt(s) x -n 100000 = 100000 images; at most 10000 per call"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["\udcff bytes that were not UTF-8"], "holds bytes that are not valid UTF-8 (at character 0)"),
    ],
)
def test_bad_sampling_requests_are_one_line(tmp_path, capsys, arguments, message):
    assert main(_sample(tmp_path, *arguments)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_a_prompts_file_that_is_not_utf8_is_named(tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_bytes(b"a red star\na caf\xe9 sign\n")
    assert main(_sample(tmp_path, "--prompts-file", str(prompts))) == 2
    assert f"--prompts-file {prompts}: not UTF-8 text (byte 16)" in capsys.readouterr().err
    prompts.write_text("\n  \n")
    assert main(_sample(tmp_path, "--prompts-file", str(prompts))) == 2
    assert f"--prompts-file {prompts}: no prompts in it (one per line)" in capsys.readouterr().err


def test_every_count_of_draws_is_both_dash_n_and_double_dash_n():
    from mmgen.cli import build_parser

    parser = build_parser()
    for command in (["sample", "a red star"], ["impute", "--model", "m"], ["eval", "--model", "m", "--task", "judge"], ["data", "preview", "d"],
                    ["data", "shapes", "--out", "d"], ["data", "encode-text", "d"]):
        assert parser.parse_args([*command, "-n", "3"]).n == parser.parse_args([*command, "--n", "3"]).n == 3


def test_an_output_that_cannot_be_written_fails_before_sampling(tmp_path, capsys, monkeypatch):
    import errno
    import tempfile

    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    assert main(["sample", "a red star", "--out", str(blocker / "o.png")]) == 2
    assert f"--out {blocker / 'o.png'}: cannot write there" in capsys.readouterr().err

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    for arguments in (_sample(tmp_path), ["eval", "--task", "judge", "--model", "x", "--out", str(tmp_path / "r.json")]):
        assert main(arguments) == 2
        assert "cannot write there (Read-only file system)" in capsys.readouterr().err


def test_sampling_in_batches_gives_the_images_of_one_batch(tmp_path):
    """--batch-size bounds memory; one generator runs through the batches, so a grid is
    the same whatever the batch size (the pipeline draws each image's noise in turn)."""
    grids = []
    for batch_size in ("4", "3"):
        out = tmp_path / f"b{batch_size}.png"
        arguments = ["sample", "a red star", "a blue circle", "-n", "2", "--steps", "2", "--batch-size", batch_size]
        assert main([*arguments, "--out", str(out)]) == 0
        grids.append(np.asarray(Image.open(out), dtype=np.int16))
    assert grids[0].shape == grids[1].shape and np.abs(grids[0] - grids[1]).max() <= 2


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda path: None, "no such file"),
        (lambda path: path.write_text("not an image"), "not a readable image (UnidentifiedImageError"),
        (lambda path: Image.new("RGB", (64, 64)).save(path), "not a readable image (DecompressionBombError"),
    ],
)
def test_an_image_to_impute_that_cannot_be_read_is_one_line(tmp_path, capsys, monkeypatch, make, message):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # a 64 x 64 image stands in for a 20000 x 20000 one
    image = tmp_path / "in.png"
    make(image)
    from mmgen.checkpoints import SHAPES_MOPOE

    assert main(["impute", "--model", str(SHAPES_MOPOE), "--image", str(image)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--image {image}: {message}" in err



def test_column_flags_read_data_whose_columns_have_other_names(tmp_path, capsys):
    datasets = pytest.importorskip("datasets")
    shapes = ShapesDataset("val", n=8, size=16)
    rows = [shapes.sample(i) for i in range(8)]
    from mmgen.data.shapes import render

    hf = datasets.Dataset.from_dict({"img": [render(row, 16) for row in rows], "caption": [row.caption for row in rows]})
    hf.save_to_disk(tmp_path / "hf")
    out = tmp_path / "preview.png"
    assert main(["data", "preview", str(tmp_path / "hf"), "--n", "2", "--size", "16", "--out", str(out)]) == 2
    assert "column 'image' not found" in capsys.readouterr().err
    assert main(["data", "preview", str(tmp_path / "hf"), "--image-column", "img", "--text-column", "caption",
                 "--n", "2", "--size", "16", "--out", str(out)]) == 0
    assert rows[0].caption in capsys.readouterr().out

    folder = tmp_path / "folder"
    folder.mkdir()
    for i, row in enumerate(rows):
        render(row, 16).save(folder / f"{i}.png")
    (folder / "metadata.jsonl").write_text("".join(
        json.dumps({"path": f"{i}.png", "caption": row.caption, "text": "not the caption"}) + "\n" for i, row in enumerate(rows)
    ))
    assert main(["train", "autoencoder", "--data", str(folder), "--image-column", "path", "--text-column", "caption",
                 "--image-size", "16", "--block-out-channels", "8,16", "--max-steps", "1", "--batch-size", "4",
                 "--output-dir", str(tmp_path / "ae"), "--report-to", "none"]) == 0
    assert main(["data", "preview", str(folder), "--image-column", "path", "--text-column", "caption", "--n", "1",
                 "--size", "16", "--out", str(out)]) == 0
    assert rows[0].caption in capsys.readouterr().out  # the caption column, not the one named text
    assert main(["data", "check", str(folder), "--size", "16"]) == 2  # without the flags: no file_name column
    assert "no 'file_name' column (this line has 'path', 'caption', 'text'; --image-column names another)" in capsys.readouterr().err


def test_image_models_train_on_images_without_captions(tmp_path, capsys):
    from mmgen.data.shapes import render

    shapes = ShapesDataset("val", n=5, size=16)
    plain, listed = tmp_path / "plain", tmp_path / "listed"
    plain.mkdir(), listed.mkdir()
    for i in range(4):
        render(shapes.sample(i), 16).save(plain / f"{i}.png")
        render(shapes.sample(i), 16).save(listed / f"{i}.png")
    rows = [{"file_name": f"{i}.png"} for i in range(4)] + [{"file_name": None, "text": "a caption without its image"}]
    (listed / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    for folder in (plain, listed):
        run = tmp_path / f"ae-{folder.name}"
        assert main(["train", "autoencoder", "--data", str(folder), "--image-size", "16", "--block-out-channels", "8,16",
                     "--max-steps", "2", "--batch-size", "4", "--output-dir", str(run), "--report-to", "none"]) == 0
        assert (run / "checkpoints" / "checkpoint-0000002" / "model" / "config.json").is_file()
        run = tmp_path / f"dvae-{folder.name}"
        assert main(["train", "dvae", "--data", str(folder), "--image-size", "16", "--num-tokens", "32", "--codebook-dim",
                     "16", "--hidden-channels", "16", "--num-layers", "2", "--max-steps", "2", "--batch-size", "4",
                     "--temperature-steps", "2", "--output-dir", str(run), "--report-to", "none"]) == 0
        assert (run / "checkpoints" / "checkpoint-0000002" / "model" / "config.json").is_file()
    autoencoder = tmp_path / "ae-plain" / "checkpoints" / "checkpoint-0000002" / "model"
    capsys.readouterr()
    assert main(["train", "ldm", "--data", str(plain), "--autoencoder", str(autoencoder), "--output-dir",
                 str(tmp_path / "ldm"), "--max-steps", "1", "--report-to", "none"]) == 2  # text-to-image needs captions
    assert "caption file 0.txt: file not found" in capsys.readouterr().err


def test_an_interrupted_training_says_where_it_resumes(tmp_path, capsys, monkeypatch):
    import mmgen.diffusion.training

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(mmgen.diffusion.training, "train_autoencoder", interrupted)
    command = ["train", "autoencoder", "--output-dir", str(tmp_path), "--report-to", "none"]
    assert main(command) == 130
    assert capsys.readouterr().err == "\nmmgen: interrupted; no checkpoint was saved yet\n"
    (tmp_path / "checkpoints" / "checkpoint-0000150").mkdir(parents=True)
    assert main([*command, "--resume", "latest"]) == 130
    assert capsys.readouterr().err == (
        f"\nmmgen: interrupted; --resume latest continues from {tmp_path / 'checkpoints' / 'checkpoint-0000150'}\n")


@pytest.mark.parametrize("size", ["20", "0"])
def test_an_image_size_the_autoencoder_cannot_halve_is_refused_before_training(tmp_path, capsys, size):
    command = ["train", "autoencoder", "--data", "shapes:val", "--image-size", size, "--block-out-channels", "8,8,8,8",
               "--max-steps", "1", "--batch-size", "2", "--output-dir", str(tmp_path / "run"), "--report-to", "none"]
    assert main(command) == 2
    assert capsys.readouterr().err == (
        f"mmgen: error: --image-size {size} must be a positive multiple of 8: the autoencoder halves the image 3 times "
        "(once per --block-out-channels width after the first)\n")


def test_on_error_skip_trains_past_bad_entries(tmp_path, capsys, monkeypatch):
    from mmgen.data.shapes import render

    data = tmp_path / "data"
    data.mkdir()
    shapes = ShapesDataset("val", n=4, size=16)
    for i in range(4):
        render(shapes.sample(i), 16).save(data / f"{i}.png")
        (data / f"{i}.txt").write_text(shapes.sample(i).caption)
    (data / "broken.png").write_bytes(b"not a png")
    command = ["train", "autoencoder", "--data", str(data), "--image-size", "16", "--block-out-channels", "8,16",
               "--max-steps", "1", "--batch-size", "4", "--output-dir", str(tmp_path / "run"), "--report-to", "none"]
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "broken.png: " in err and "--on-error skip" in err
    # As a terminal shows warnings (pytest records them instead): mmgen's as one line, without
    # Python's file name and source line.
    monkeypatch.setattr(warnings, "_showwarnmsg_impl", lambda message: sys.stderr.write(warnings._formatwarnmsg(message)))
    python_format = warnings.formatwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main([*command, "--on-error", "skip"]) == 0
    err = capsys.readouterr().err
    assert "mmgen: warning: " in err and f"skipped 1 of 5 entries: {data / 'broken.png'}: " in err and "warnings.warn(" not in err
    assert warnings.formatwarning is python_format  # as it was, for a caller that goes on
    with pytest.raises(SystemExit) as exit:  # data check lists every bad entry, whatever the column flags
        main(["data", "check", str(data), "--text-column", "text"])
    out = capsys.readouterr().out
    assert exit.value.code == 1 and "broken.png" in out and "4 usable examples, 1 skipped" in out


@pytest.mark.parametrize("command, message", [
    (["train", "autoencoder", "--latent-channels", "8"], "--latent-channels: shapes a new model"),
    (["train", "ldm", "--block-out-channels", "32,64", "--text-encoder", "clip"],
     "--text-encoder, --block-out-channels: shape a new model"),
    (["train", "dvae", "--num-tokens", "64"], "--num-tokens: shapes a new model"),
    (["train", "dvae-prior", "--hidden-size", "64"], "--hidden-size: shapes a new model"),
    (["train", "mvae", "--latent-dim", "8", "--aggregation", "poe"], "--aggregation, --latent-dim: shape a new model"),
])
def test_options_that_shape_a_new_model_are_refused_beside_pretrained(tmp_path, capsys, command, message):
    # They used to be ignored: the fine-tune kept the pretrained model's architecture without a word.
    assert main([*command, "--pretrained", "some/model", "--output-dir", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == f"mmgen: error: {message}; --pretrained some/model brings its own (leave " + (
        "them out)\n" if "shape a" in message else "it out)\n")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("arguments, message", [
    (["--task", "text-to-image", "--clip", "c"], "--clip judges text-to-image, impute and reconstruct on --data; give --data"),
    (["--task", "retrieval", "--data", "d", "--clip", "c"], "--task retrieval measures --model itself"),
    (["--task", "text-to-image", "--classifier", "k", "--label", "x"], "--classifier and --label score --task impute on --data"),
    (["--task", "text-to-image", "--data", "d", "--judge", "j"], "--judge reads Shapes; on --data, --clip"),
])
def test_eval_names_a_judge_it_would_not_read(tmp_path, capsys, arguments, message):
    # Each used to be ignored without a word.
    assert main(["eval", "--model", "m", *arguments, "--out", str(tmp_path / "report.json")]) == 2
    assert message in capsys.readouterr().err
