"""The reference bertclf must match: a plain Hugging Face + PyTorch fine-tune of the same checkpoint.

    .venv-hf/bin/python benchmarks/hf_finetune.py --checkpoint models/pretrained/MiniLM-L6-H384-uncased \
        --train T.csv --validation V.csv --test S.csv [--epochs 3] [--lr 1e-4] [--batch_size 32] [--max_len 128]

What a user would write by hand from the transformers documentation: AutoModelForSequenceClassification
on the checkpoint folder (safetensors only), AdamW (weight decay 0.01), a linear warmup over the
first 10% of steps then linear decay to 0, shuffled batches padded to their longest text, the
last epoch's weights evaluated on the test split. The validation split is not used (the recipe
has no early stopping). Labels joined by `|` make it multi-label (transformers' own
`problem_type="multi_label_classification"`: binary cross-entropy, each label at probability 0.5).
Prints one JSON line: accuracy (subset accuracy if multi-label), macro-F1 (and micro-F1).

It runs in its own interpreter with torch and transformers installed (see quality.py); bertclf never
imports it.
"""

import argparse
import csv
import json
import random


def read(path):
    with open(path, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    return [row["text"] for row in rows], [row["label"] for row in rows]


def main():
    import numpy as np
    import torch
    from sklearn.metrics import accuracy_score, f1_score
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--train", required=True)
    parser.add_argument("--validation")
    parser.add_argument("--test", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_len", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    train_texts, train_labels = read(args.train)
    test_texts, test_labels = read(args.test)
    multi = any("|" in label for label in train_labels)
    sets = [label.split("|") for label in train_labels] if multi else [[label] for label in train_labels]
    classes = sorted({c for names in sets for c in names})
    index = {label: i for i, label in enumerate(classes)}
    tokenizer = AutoTokenizer.from_pretrained(args.checkpoint)
    model = AutoModelForSequenceClassification.from_pretrained(
        args.checkpoint,
        num_labels=len(classes),
        use_safetensors=True,
        problem_type="multi_label_classification" if multi else "single_label_classification",
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    steps = args.epochs * ((len(train_texts) + args.batch_size - 1) // args.batch_size)
    schedule = get_linear_schedule_with_warmup(optimizer, int(0.1 * steps), steps)

    def batch(texts):
        return tokenizer(texts, truncation=True, max_length=args.max_len, padding=True, return_tensors="pt")

    if multi:
        y = torch.zeros((len(sets), len(classes)))
        for row, names in enumerate(sets):
            y[row, [index[c] for c in names]] = 1.0
    else:
        y = torch.tensor([index[label] for label in train_labels])
    for _ in range(args.epochs):
        model.train()
        order = torch.randperm(len(train_texts)).tolist()
        for start in range(0, len(order), args.batch_size):
            chosen = order[start : start + args.batch_size]
            loss = model(**batch([train_texts[i] for i in chosen]), labels=y[chosen]).loss
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()

    model.eval()
    predictions = []
    with torch.no_grad():
        for start in range(0, len(test_texts), 64):
            logits = model(**batch(test_texts[start : start + 64])).logits
            predictions.extend((logits > 0).int().tolist() if multi else logits.argmax(-1).tolist())
    if multi:
        truth = np.zeros((len(test_labels), len(classes)), int)
        for row, label in enumerate(test_labels):
            truth[row, [index[c] for c in label.split("|") if c in index]] = 1
        scores = {"micro_f1": f1_score(truth, np.array(predictions), average="micro", zero_division=0)}
    else:
        truth = [index.get(label, -1) for label in test_labels]
        scores = {}
    result = {
        "accuracy": accuracy_score(truth, np.array(predictions) if multi else predictions),
        "macro_f1": f1_score(truth, np.array(predictions) if multi else predictions, average="macro", zero_division=0),
        **scores,
        "epochs_run": args.epochs,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
