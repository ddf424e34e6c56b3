"""HTTP conformance against a running mathrank (run by .ci/run, not by cargo test).

1. The official Cohere Python SDK calls /v1/rerank (cohere.Client) and /v2/rerank
   (cohere.ClientV2) with base_url pointed at mathrank; the assertions are on what the SDK
   parsed.
2. Every curl example inside an `<!-- http-examples:begin -->` block of the given Markdown
   files (the README's first search, docs/http-api.md's tour) runs against the same server and
   must succeed (curl --fail-with-body) with a JSON answer.

Usage: check-http.py BASE_URL MARKDOWN_FILE...
"""

import json
import math
import re
import subprocess
import sys

import cohere

base, markdown_files = sys.argv[1], sys.argv[2:]
query = "How do I compute $3^{100} \\bmod 7$ with Fermat's little theorem?"
documents = [
    "By Fermat, $3^6 \\equiv 1 \\pmod 7$, so $3^{100} \\equiv 3^4 \\equiv 4$.",
    "A triangular matrix has its eigenvalues on the diagonal.",
    "Induction on $n$.",
]
checks = 0


def check(condition, message):
    global checks
    checks += 1
    if not condition:
        sys.exit(f"check-http: FAILED: {message}")


v1 = cohere.Client(base_url=base, api_key="unused")
response = v1.rerank(model="mathrank", query=query, documents=documents, top_n=2, return_documents=True)
check(len(response.results) == 2, f"v1 top_n=2 gave {len(response.results)} results")
scores = [r.relevance_score for r in response.results]
check(all(0.0 <= s <= 1.0 for s in scores), f"v1 relevance_score in [0, 1]: {scores}")
check(scores == sorted(scores, reverse=True), f"v1 results sorted: {scores}")
check(all(r.document.text == documents[r.index] for r in response.results), "v1 documents echoed")
check(response.meta.api_version.version == "1", f"v1 meta: {response.meta}")

v2 = cohere.ClientV2(base_url=base, api_key="unused")
response2 = v2.rerank(model="mathrank", query=query, documents=documents)
check(len(response2.results) == len(documents), "v2 returns every document")
by_index = {r.index: r.relevance_score for r in response2.results}
check(sorted(by_index) == list(range(len(documents))), f"v2 indices: {sorted(by_index)}")
for r in response.results:
    check(math.isclose(by_index[r.index], r.relevance_score, abs_tol=1e-6), "v1 and v2 agree")
check(all(getattr(r, "document", None) is None for r in response2.results), "v2 returns no documents unless asked")

try:
    v2.rerank(model="mathrank", query="", documents=documents)
    check(False, "an empty query must be refused")
except cohere.core.api_error.ApiError as err:
    check(err.status_code == 400, f"empty query: HTTP {err.status_code}")
    check(err.body["error"]["field"] == "query", f"empty query names the field: {err.body}")

print(f"check-http: Cohere SDK {cohere.__version__}: v1 and v2 rerank parsed as expected")

# Each file that must show curl examples, with how many at least: an example that disappears
# fails here, one that breaks fails below.
expected = {"README.md": 2, "docs/http-api.md": 9}
address = base.split("://", 1)[1]
for path in markdown_files:
    text = open(path, encoding="utf-8").read()
    sections = re.findall(r"<!-- http-examples:begin -->(.*?)<!-- http-examples:end -->", text, re.S)
    if not sections:
        check(path not in expected, f"{path} has no http-examples section")
        continue
    for section in sections:
        block = section.split("```sh", 1)[1].split("```", 1)[0]
        examples = block.count("curl ")
        # Run the block as the shell would, each curl made to fail on an HTTP error status.
        script = block.replace("127.0.0.1:50051", address).replace("curl -s ", "curl -sS --fail-with-body ")
        run = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True)
        check(run.returncode == 0, f"{path}: examples failed ({run.returncode}):\n{run.stdout}{run.stderr}")
        decoder, rest, answers = json.JSONDecoder(), run.stdout.strip(), 0
        while rest:
            _, end = decoder.raw_decode(rest)
            rest, answers = rest[end:].lstrip(), answers + 1
        check(answers == examples, f"{path}: {examples} examples gave {answers} JSON answers")
        expected[path] = expected.get(path, 0) - examples
        print(f"check-http: {path}: {examples} curl examples ran")
for path, missing in expected.items():
    check(missing <= 0, f"{path} shows {missing} curl examples fewer than expected (or was not given)")
print(f"{checks} passed, 0 failed")
