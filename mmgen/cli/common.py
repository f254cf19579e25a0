"""What every command module of the `mmgen` command line shares: the help formatter, the
training-loop flags, option parsers and checks of outputs made before any work."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable
from pathlib import Path

from mmgen.errors import ConfigError, MMGenError

Handler = Callable[[argparse.Namespace], None]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows every option's default (argparse's own formatter skips options without help)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help = action.help or ""
        shown = action.default is not None and action.default is not False and action.default != argparse.SUPPRESS
        if action.option_strings and shown and "%(default)" not in help:
            help += " (default: %(default)s)"
        return help


def add_command(subparsers, name: str, handler: Handler, help: str, description: str | None = None):
    parser = subparsers.add_parser(name, help=help, description=description or help, formatter_class=HelpFormatter)
    parser.set_defaults(handler=handler)
    return parser



def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """Every `TrainingConfig` field as a `--flag`, with its default; recipes call this."""
    from mmgen.training import TrainingConfig

    hints = typing.get_type_hints(TrainingConfig)
    group = parser.add_argument_group("training loop")
    for field in dataclasses.fields(TrainingConfig):
        flag = "--" + field.name.replace("_", "-")
        if field.default is dataclasses.MISSING:
            group.add_argument(flag, required=True, dest=field.name, help=field.metadata["help"])
            continue
        help = field.metadata["help"]
        if field.name == "max_steps":  # None when not given, so that --epochs with it can be refused
            help, default = f"{help} (default: {field.default}, or what --epochs sets)", None
        else:
            default = field.default
        group.add_argument(flag, type=_parser_for(hints[field.name]), default=default, dest=field.name, help=help)


def training_config_from_args(args: argparse.Namespace):
    """The loop settings of a `train` command; its --output-dir checked now, before a
    recipe loads data or encodes captions for minutes."""
    from mmgen.training import TrainingConfig
    from mmgen.training.trainer import check_output_dir

    settings = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainingConfig)}
    if settings["max_steps"] is None:
        del settings["max_steps"]  # TrainingConfig's default
    elif settings["epochs"] is not None:
        raise ConfigError("give --max-steps or --epochs, not both (--epochs sets the steps from the data's size)")
    config = TrainingConfig(**settings)
    check_output_dir(config)
    return config


def _parser_for(hint) -> Callable[[str], object]:
    """argparse type for `int`, `float`, `str` and their `X | None` forms ("none" -> None)."""
    optional = isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)
    base = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint

    def parse(text: str):
        if optional and text.lower() == "none":
            return None
        return base(text)

    parse.__name__ = base.__name__  # argparse names the type in its error messages
    return parse


def report_training(result, what: str) -> None:
    if result.last_checkpoint is None:
        print(f"nothing to do: the run is at step {result.step}")
    else:
        print(f"at step {result.step}; {what} saved in {result.last_checkpoint / 'model'}")


def int_list(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(","))


def image_output(out: str) -> Path:
    """--out, checked before anything is generated: an extension PIL writes, its folder made."""
    from PIL import Image

    path = Path(out)
    if path.is_dir():
        raise MMGenError(f"--out {out}: a folder; name an image file in it")
    if path.suffix.lower() not in Image.registered_extensions():
        problem = f"{path.suffix} is not an image format" if path.suffix else "no file extension"
        raise MMGenError(f"--out {out}: {problem}; use .png or .jpg")
    writable_folder(path.parent, f"--out {out}")
    return path


def writable_folder(folder: Path, option: str) -> None:
    """Make `folder` and prove a file can be written there, before any work that would be lost."""
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise MMGenError(f"{option}: cannot write there ({error.strerror or error})") from error


MOST_IMAGES = 10_000  # per call: one grid of them must still fit in memory and in a PNG


def check_draws(n: int, prompts: int = 1) -> None:
    if n < 1:
        raise MMGenError(f"-n must be at least 1, got {n}")
    if n * prompts > MOST_IMAGES:
        raise MMGenError(f"{prompts} prompt(s) x -n {n} = {n * prompts} images; at most {MOST_IMAGES} per call")


def add_lora_weight_argument(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--lora-weight", type=float, default=1.0, metavar="W",
        help="scale of the --lora adapters (0: the base model; below 1 keeps more of what the base drew)",
    )


def check_lora_weight(args: argparse.Namespace) -> None:
    import math

    if not math.isfinite(args.lora_weight):
        raise MMGenError(f"--lora-weight must be a finite number, got {args.lora_weight}")
    if args.lora_weight != 1.0 and not args.lora:
        raise MMGenError("--lora-weight scales LoRA adapters: give them with --lora PATH")


def check_guidance_scale(value: float | None) -> None:
    import math

    if value is not None and not (math.isfinite(value) and value >= 0):
        raise MMGenError(f"--guidance-scale must be a finite number >= 0, got {value}")


def assignments(pairs: list[str], option: str) -> dict[str, str]:
    """["name=value", ...] -> {name: value}."""
    parsed = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name or not value:
            raise MMGenError(f"{option}: expected NAME=VALUE, got {pair!r}")
        if name in parsed:
            raise MMGenError(f"{option}: {name} is given twice ({parsed[name]!r} and {value!r})")
        parsed[name] = value
    return parsed


def weights_option(text: str) -> dict[str, float]:
    try:
        return {name: float(value) for name, value in assignments(text.split(","), "--likelihood-weights").items()}
    except (MMGenError, ValueError) as error:
        raise argparse.ArgumentTypeError(f"expected NAME=NUMBER,...: {error}") from error


def sizes_option(text: str) -> dict[str, int]:
    try:
        return {name: int(value) for name, value in assignments(text.split(","), "--private-dims").items()}
    except (MMGenError, ValueError) as error:
        raise argparse.ArgumentTypeError(f"expected NAME=WHOLE_NUMBER,...: {error}") from error


def add_validation_prompts_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--validation-prompts", nargs="+", default=None, metavar="PROMPT",
        help="prompts drawn at each validation, written under their images in samples/ (or one text file, a prompt "
        "per line); default: 8 of the data's captions (Shapes: fixed prompts)",
    )


def validation_prompts_from_args(values: list[str] | None) -> list[str] | None:
    """--validation-prompts: the prompts, or the lines of the one file given."""
    if values and len(values) == 1 and values[0].lower().endswith(".txt") and not Path(values[0]).is_file():
        raise MMGenError(f"--validation-prompts {values[0]}: no such file")
    if values and len(values) == 1 and Path(values[0]).is_file():
        try:
            values = [line.strip() for line in Path(values[0]).read_text(encoding="utf-8").splitlines() if line.strip()]
        except UnicodeDecodeError as error:
            raise MMGenError(f"--validation-prompts {values[0]}: not UTF-8 text (byte {error.start})") from error
        if not values:
            raise MMGenError("--validation-prompts: the file holds no prompt")
    return values


# The options that name a command's data: every one of them reads the same columns.
DATA_OPTIONS = ("data", "source", "validation_data", "preservation_data")


def add_column_arguments(parser: argparse.ArgumentParser) -> None:
    """--image-column, --text-column and --on-error on every command under `parser` that
    takes data."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in dict.fromkeys(action.choices.values()):
                add_column_arguments(command)
    if any(action.dest in DATA_OPTIONS for action in parser._actions):
        group = parser.add_argument_group("data columns")
        group.add_argument(
            "--image-column", default=None,
            help="column of the main image (default: file_name in a metadata.jsonl or .csv, image in a Hugging Face dataset)",
        )
        group.add_argument("--text-column", default=None, help="column of the captions (default: text)")
        if not any(action.dest == "on_error" for action in parser._actions):
            group.add_argument(
                "--on-error", default="raise", choices=("raise", "skip"),
                help="bad entries (an unreadable image, a missing caption): stop at the first, or skip them all with "
                "one warning that counts them (`mmgen data check` lists them)",
            )


def apply_columns(args: argparse.Namespace) -> None:
    """Give the data options the --image-column / --text-column names and --on-error (as
    DataSources)."""
    image_column, text_column = getattr(args, "image_column", None), getattr(args, "text_column", None)
    on_error = getattr(args, "on_error", "raise")
    if not (image_column or text_column or on_error != "raise"):
        return
    from mmgen.data import DataSource

    for option in DATA_OPTIONS:
        value = getattr(args, option, None)
        if isinstance(value, str):
            # Only a skip is carried: a command may pass its own (data check always skips).
            setattr(args, option, DataSource(value, image_column, text_column, on_error if on_error == "skip" else None))


def new_model_options(command: argparse.ArgumentParser, *flags: str) -> None:
    """Mark `flags` as options that shape a new model: with --pretrained, which brings its
    own, giving one is an error (`check_new_model_options`), not silently ignored."""
    command.set_defaults(new_model_defaults={flag: command.get_default(_dest(flag)) for flag in flags})


def check_new_model_options(args: argparse.Namespace) -> None:
    """A one-line error for the new-model options given beside --pretrained."""
    if not getattr(args, "pretrained", None):
        return
    given = [flag for flag, default in getattr(args, "new_model_defaults", {}).items() if getattr(args, _dest(flag)) != default]
    if given:
        raise MMGenError(f"{', '.join(given)}: shape{'s' if len(given) == 1 else ''} a new model; --pretrained "
                         f"{args.pretrained} brings its own (leave {'it' if len(given) == 1 else 'them'} out)")


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def data_columns(args: argparse.Namespace) -> dict[str, str]:
    """The --image-column / --text-column given, and --on-error skip, for a report's settings."""
    settings = {name: value for name in ("image_column", "text_column") if (value := getattr(args, name, None))}
    if getattr(args, "on_error", "raise") != "raise":
        settings["on_error"] = args.on_error
    return settings


def add_text_encoder_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--text-encoder", default="minilm",
        help="minilm (pretrained, frozen, cached), clip (new, trained with the model), or a folder "
        "with tokenizer/ and text_encoder/ (e.g. a trained pipeline, to share its encoder; frozen)",
    )
    parser.add_argument("--max-length", type=int, default=77, help="tokens per prompt (longer ones are truncated)")
    parser.add_argument("--text-hidden-size", type=int, default=256, help="width of a new clip text encoder")
    parser.add_argument("--text-layers", type=int, default=4, help="layers of a new clip text encoder")
    parser.add_argument(
        "--caption-variants", type=int, default=0,
        help="train on this many augmented captions per image (on Shapes: other sentence shapes, synonyms, partial "
        "captions, case, typos; on other data: case, punctuation, lead-ins, typos); 0: the captions as given",
    )
