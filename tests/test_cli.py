import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from mmgen.data import ShapesDataset
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
    assert main(["data", "preview", str(folder), "--n", "4", "--size", "16", "--out", str(out)]) == 0
    assert Image.open(out).size == (2 * 16 + 3 * 2,) * 2  # 2 x 2 tiles of 16 px, 2 px padding
    assert main(["data", "check", str(folder), "--size", "16"]) == 0
    assert "4 usable examples, 0 skipped" in capsys.readouterr().out

    (folder / "000001.png").write_bytes(b"not a png")
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "check", str(folder), "--size", "16"])
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert "000001.png" in out and "3 usable examples, 1 skipped" in out


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


def test_training_flags_cover_the_config():
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
