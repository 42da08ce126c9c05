"""Rebuild the real, freely licensed text sets the quality benchmark measures on.

    python benchmarks/realsets.py [--out data/real] [--sets debian,fortunes,foldoc,debtags] [--size 10000]

Every set comes from Debian packages, fetched with apt's own client (no root needed), so it
rebuilds the same on any Debian or Ubuntu machine that can reach a Debian mirror. Nothing of the
data is committed: `data/real/` is ignored by git, and each set's licence is its source's.

- `debian` (descriptions): a package's short + long description, labelled with its archive
  section (16 topical ones); from Debian's `Packages` and `Translation-en` indexes (each package's
  own free licence).
- `fortunes` (short messages, quotes): one fortune cookie, labelled with the fortune file it is in
  (18); from the Debian packages `fortunes` and `fortunes-min` (BSD).
- `foldoc` (long definitions): an entry of the Free On-line Dictionary of Computing, labelled with
  its subject tag (14), which is removed from the text; from the Debian package `dict-foldoc` (GFDL).
- `debtags` (descriptions, multi-label): as `debian`, labelled with every frequent `works-with::`
  debtag of the package (`a|b`); from Debian's `Packages` index.

Each set is a seeded sample of about `--size` texts that keeps each label's natural share (so its
imbalance) with at least `--min_per_class` of each, has no duplicate texts, and is written as
`<set>.csv` with `text,label` columns. The default, 10,000, gives test splits of 1,000 texts (10%),
where one point of accuracy is 10 texts rather than 1.5 (issue 28); a source with fewer texts
gives all it has, and the line it prints says so. `--size 1500` rebuilds the earlier sets.
"""

import argparse
import collections
import csv
import gzip
import random
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DEBIAN_SECTIONS = {
    *("admin", "database", "editors", "electronics", "games", "graphics", "hamradio", "mail"),
    *("math", "net", "science", "sound", "text", "vcs", "video", "web"),
}
FORTUNE_FILES = (
    *("art", "computers", "definitions", "education", "food", "law", "linux", "literature", "love"),
    *("medicine", "men-women", "politics", "science", "songs-poems", "sports", "startrek", "work", "zippy"),
)
FOLDOC_SUBJECTS = (
    "language",
    "networking",
    "programming",
    "operating system",
    "jargon",
    "hardware",
    "company",
    "communications",
    "mathematics",
    "storage",
    "processor",
    "database",
    "web",
    "person",
)
APT_HELPER = "/usr/lib/apt/apt-helper"


class SetError(Exception):
    """A set cannot be built here; the message says why and what to do."""


def run(command, what, cwd=None):
    try:
        return subprocess.run(command, check=True, capture_output=True, text=True, cwd=cwd)
    except FileNotFoundError:
        raise SetError(f"{what} needs `{command[0]}`, not installed here (Debian and Ubuntu have it)") from None
    except subprocess.CalledProcessError as error:
        tail = (error.stderr or error.stdout).strip().splitlines()[-3:]
        raise SetError(
            f"{what} failed: {' / '.join(tail)}\n"
            "It needs a reachable Debian mirror (apt's sources). Check `apt-get update` works, then run again."
        ) from None


def apt_indexes(cache):
    """Packages and Translation-en indexes in a private lists folder (the system's is untouched)."""
    lists = cache / "lists"
    (lists / "partial").mkdir(parents=True, exist_ok=True)
    run(
        ["apt-get", "-q", "-o", f"Dir::State::Lists={lists}", "-o", "Acquire::Languages=en", "update"],
        "downloading Debian's package indexes",
    )
    packages = sorted(lists.glob("*_main_binary-*_Packages*"))
    translations = sorted(lists.glob("*_main_i18n_Translation-en*"))
    if not packages or not translations:
        raise SetError(f"apt-get update wrote no Packages or Translation-en index to {lists}")
    return [read_index(p) for p in packages], [read_index(t) for t in translations]


def read_index(path):
    """An apt index, decompressed by apt's own helper (lz4, xz, gz...)."""
    return run([APT_HELPER, "cat-file", str(path)], f"reading {path.name}").stdout


def stanzas(index):
    """Debian control stanzas as dicts; continuation lines stay in their field."""
    for block in index.split("\n\n"):
        fields, key = {}, None
        for line in block.splitlines():
            if line.startswith((" ", "\t")) and key:
                fields[key] += "\n" + line
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields:
            yield fields


def description_text(description):
    """Short description, then the long one's paragraphs (" ." lines are paragraph breaks)."""
    short, _, long = description.partition("\n")
    paragraphs = " ".join(line.strip() for line in long.splitlines()).split(" . ")
    return "\n".join(re.sub(r"\s+", " ", p).strip() for p in [f"{short.strip()}. {paragraphs[0]}", *paragraphs[1:]])


def debian_packages(cache):
    packages, translations = apt_indexes(cache)
    long_descriptions = {}
    for index in translations:
        for fields in stanzas(index):
            if "Description-md5" in fields and "Description-en" in fields:
                long_descriptions[fields["Description-md5"]] = fields["Description-en"]
    for index in packages:
        for fields in stanzas(index):
            description = long_descriptions.get(fields.get("Description-md5", ""))
            if description:
                yield fields, description_text(description)


def build_debian(cache):
    rows = []
    for fields, text in debian_packages(cache):
        section = fields.get("Section", "").rpartition("/")[2]  # contrib/net -> net
        if section in DEBIAN_SECTIONS:
            rows.append((text, section))
    return rows


def build_debtags(cache):
    rows = []
    for fields, text in debian_packages(cache):
        tags = re.findall(r"works-with::([\w:-]+)", fields.get("Tag", ""))
        if tags:
            rows.append((text, sorted(set(tags))))
    frequent = collections.Counter(tag for _, tags in rows for tag in tags)
    keep = {tag for tag, count in frequent.items() if count >= 60}
    return [(text, "|".join(t for t in tags if t in keep)) for text, tags in rows if set(tags) & keep]


def debian_package_files(cache, package, what):
    """Unpack one Debian package (apt-get download + dpkg-deb -x) into the cache; returns its root."""
    root = cache / package
    if root.is_dir():
        return root
    with tempfile.TemporaryDirectory(dir=cache) as scratch:
        subprocess_dir = Path(scratch)
        run(["apt-get", "-q", "download", package], f"{what} (apt-get download {package})", cwd=subprocess_dir)
        (deb,) = subprocess_dir.glob("*.deb")
        unpacked = subprocess_dir / "root"
        run(["dpkg-deb", "-x", str(deb), str(unpacked)], f"unpacking {deb.name}")
        shutil.move(str(unpacked), root)
    return root


def build_fortunes(cache):
    folders = [
        debian_package_files(cache, package, "the fortunes set") / "usr/share/games/fortunes"
        for package in ("fortunes", "fortunes-min")
    ]
    rows = []
    for name in FORTUNE_FILES:
        (path,) = [folder / name for folder in folders if (folder / name).is_file()]
        for cookie in path.read_text(encoding="utf-8", errors="replace").split("\n%\n"):
            text = cookie.strip("%\n").strip()
            if text:
                rows.append((text, name))
    return rows


def build_foldoc(cache):
    dictionary = debian_package_files(cache, "dict-foldoc", "the foldoc set") / "usr/share/dictd/foldoc.dict.dz"
    entries, heading, body = [], None, []
    with gzip.open(dictionary, "rt", encoding="utf-8", errors="replace") as file:
        lines = file.read().splitlines()
    for line in lines:
        if line.strip() and not line[0].isspace():
            if heading is not None:
                entries.append((heading, body))
            heading, body = line.strip(), []
        elif heading is not None:
            body.append(line.strip())
    if heading is not None:
        entries.append((heading, body))
    rows = []
    for heading, body in entries:
        text = " ".join(line for line in body if line)
        tag = re.search(r"<([^<>]+)>", text)
        if not tag or tag.group(1) not in FOLDOC_SUBJECTS:
            continue
        text = re.sub(r"<[^<>]+>", " ", text)  # the subject tags, the label itself
        text = re.sub(r"\(\d{4}-\d{2}-\d{2}\)", " ", text)  # revision dates
        text = text.replace("{", "").replace("}", "")  # cross-reference braces
        text = re.sub(r"\s+", " ", f"{heading}: {text}").strip()
        rows.append((text, tag.group(1)))
    return rows


BUILDERS = {"debian": build_debian, "fortunes": build_fortunes, "foldoc": build_foldoc, "debtags": build_debtags}


def sample(rows, size, min_per_class, seed):
    """Drop duplicate texts (and texts seen under two labels), then draw about `size` texts keeping
    each label's share of the whole (its natural imbalance), at least `min_per_class` of each."""
    labels_of = collections.defaultdict(set)
    for text, label in rows:
        labels_of[text].add(label)
    unique = sorted({(text, label) for text, label in rows if len(labels_of[text]) == 1})
    random.Random(seed).shuffle(unique)
    key = {row: row[1].split("|")[0] for row in unique}  # multi-label: by its first label
    totals = collections.Counter(key.values())
    quota = {label: min(n, max(min_per_class, round(n * size / len(unique)))) for label, n in totals.items()}
    kept, counts = [], collections.Counter()
    for row in unique:
        if counts[key[row]] < quota[key[row]]:
            counts[key[row]] += 1
            kept.append(row)
    return kept


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/real", help="folder for <set>.csv (default: data/real)")
    parser.add_argument("--sets", default=",".join(BUILDERS), help="comma-separated (default: all)")
    parser.add_argument(
        "--size", type=int, default=10_000, help="about this many texts per set (default: 10000: test splits of 1000)"
    )
    parser.add_argument("--min_per_class", type=int, default=30, help="at least this many of a label (default: 30)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.sets.split(",") if name.strip()]
    unknown = sorted(set(names) - set(BUILDERS))
    if unknown:
        parser.error(f"unknown set {', '.join(unknown)}; choose from {', '.join(BUILDERS)}")
    out = Path(args.out)
    cache = out.resolve() / ".cache"
    cache.mkdir(parents=True, exist_ok=True)
    for name in names:
        try:
            rows = sample(BUILDERS[name](cache), args.size, args.min_per_class, args.seed)
        except SetError as error:
            print(f"{name}: {error}", file=sys.stderr)
            return 1
        path = out / f"{name}.csv"
        with open(path.with_suffix(".tmp"), "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(["text", "label"])
            writer.writerows(rows)
        path.with_suffix(".tmp").replace(path)
        classes = collections.Counter(label for _, label in rows)
        sizes = sorted(classes.values())
        short = (
            f"; the source has fewer than {args.size}: its test split is ~{len(rows) // 10}"
            if len(rows) < 0.95 * args.size
            else ""
        )
        print(f"{path}: {len(rows)} texts, {len(classes)} label sets, largest/smallest {sizes[-1]}/{sizes[0]}{short}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
