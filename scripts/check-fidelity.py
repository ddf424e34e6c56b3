"""Fidelity conformance (run by .ci/run): does the model read what it was trained on?

The reference is the authors' preprocessing (AnReu/ALBERT-for-Math-AR): each
span.math-container replaced by its text, wrapped in $..$ unless it starts with $, then
BeautifulSoup's .text; segment A = title + " " + body, both converted so. mathrank's texts come
from `mathrank texts` (every post of a dump) and `mathrank eval --inputs-out` (ARQMath topics).
Both are tokenized with ../shared's albert-base-v2 tokenizer after collapsing whitespace (the
real tokenizer's charsmap folds \\n \\t \\r, the rebuilt one does not), and their ids compared.

Usage: check-fidelity.py MATHRANK SHARED_DIR INDEX_DIR
"""

import json
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from bs4 import BeautifulSoup
from tokenizers import Tokenizer

mathrank, shared, index = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
tokenizer = Tokenizer.from_file(str(shared / "models/albert-base-v2-tokenizer/tokenizer.json"))


def authors(html):
    soup = BeautifulSoup(html, "html.parser")
    for span in soup.find_all("span", class_="math-container"):
        text = span.text
        span.replace_with(text if text.startswith("$") else "$" + text + "$")
    return soup.text


def ids(text):
    return tokenizer.encode(" ".join(text.split()), add_special_tokens=False).ids


def compare(label, pairs, goal):
    same = sum(1 for ours, theirs in pairs.values() if ids(ours) == ids(theirs))
    share = same / len(pairs)
    print(f"{label}: {same}/{len(pairs)} = {100 * share:.2f}% give the authors' token ids")
    for key, (ours, theirs) in list(pairs.items()):
        if ids(ours) != ids(theirs):
            print(f"  differs: {key}\n    ours:    {' '.join(ours.split())[:300]!r}\n    authors: {' '.join(theirs.split())[:300]!r}")
    return share >= goal


ok = True
answers = {}
for dump in sorted((shared / "data/stackexchange").glob("*.xml")):
    theirs = {}
    for _, row in ET.iterparse(dump):
        if row.tag == "row" and row.get("PostTypeId") == "2":
            theirs[row.get("Id")] = authors(row.get("Body", ""))
        row.clear()
    out = subprocess.run([mathrank, "--log", "error", "texts", "--dump", str(dump)], check=True, capture_output=True, text=True)
    for line in out.stdout.split("\n"):
        if not line:
            continue
        post = json.loads(line)
        if post["kind"] == "answer" and str(post["id"]) in theirs:
            answers[f"{dump.name}#{post['id']}"] = (post["text"], theirs[str(post["id"])])
ok &= compare("answers of the three real dumps", answers, 0.995)

topics = {}
with tempfile.TemporaryDirectory() as tmp:
    for path in sorted((shared / "data/arqmath").glob("topics.*.xml")):
        inputs = Path(tmp) / "inputs.jsonl"
        subprocess.run(
            [mathrank, "--log", "error", "eval", "--index", index, "--no-rerank", "--topics", str(path),
             "--run-out", str(Path(tmp) / "run.tsv"), "--depth", "1", "--inputs-out", str(inputs)],
            check=True, capture_output=True,
        )
        ours = {json.loads(line)["topic"]: json.loads(line)["query"] for line in inputs.read_text().split("\n") if line}
        for topic in ET.parse(path).getroot().iter("Topic"):
            number = topic.get("number")
            title, question = topic.findtext("Title") or "", topic.findtext("Question") or ""
            reference = " ".join(part for part in (authors(title).strip(), authors(question).strip()) if part)
            topics[f"{path.name}#{number}"] = (ours[number], reference)
ok &= compare("segment A of the ARQMath topics", topics, 1.0)
print("2 passed, 0 failed" if ok else "fidelity below its goal")
sys.exit(0 if ok else 1)
