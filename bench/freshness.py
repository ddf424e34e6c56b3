#!/usr/bin/env python3
"""Freshness, ingest and search under ingest of the live index, against a running server.

Writers send new answers (and a few new questions and edits) through `POST /v1/posts:bulk`,
paced to `--rate` posts per second (0: as fast as the server acknowledges). Every bulk answer
carries the store sequence number `seq` of its writes; a poller reads `searchable_seq` from
`GET /v1/info` every `--poll-ms`, so each acknowledgement's freshness is the time from the
acknowledgement to the first poll that saw its `seq` searchable (an upper bound, by at most
one poll interval). A sample of the acknowledged answers is then fetched with
`GET /v1/answers/{id}` right after they became searchable, to check that `searchable_seq` tells
the truth.

With `--search-seconds`, a separate process measures BM25 latency (`POST /v1/search`,
`rerank: false`) first with the server idle, then while the writers run: the two side by side.

Prints one JSON line per phase. Standard library only.
"""

import argparse
import bisect
import http.client
import json
import multiprocessing
import platform
import random
import subprocess
import threading
import time

WORDS = ("integral derivative matrix eigenvalue prime group ring field limit series sum proof induction "
         "topology measure probability graph vertex polynomial root norm vector basis kernel compact "
         "continuous function sequence converge bounded").split()


def cpu_model():
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


class Connection:
    def __init__(self, host, port, timeout=60):
        self.host, self.port, self.timeout = host, port, timeout
        self.connection = None

    def call(self, method, path, body=None, headers=None):
        for attempt in range(2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.connection.request(method, path, body=body, headers=headers or {})
                response = self.connection.getresponse()
                return response.status, response.read()
            except (OSError, http.client.HTTPException):
                self.connection.close()
                self.connection = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def percentile(values, q):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def ms(value):
    return None if value is None else round(value * 1000, 1)


# ---- Search latency, in a process of its own (no GIL shared with the writers).

def search_worker(host, port, token, queries, seconds, out):
    connection = Connection(host, port)
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    latencies, errors = [], 0
    rng = random.Random(1)
    end = time.time() + seconds
    while time.time() < end:
        body = json.dumps({"query": rng.choice(queries), "topK": 10, "rerank": False})
        started = time.perf_counter()
        status, _ = connection.call("POST", "/v1/search", body, headers)
        elapsed = time.perf_counter() - started
        if status == 200:
            latencies.append(elapsed)
        else:
            errors += 1
    out.put({"searches": len(latencies), "errors": errors, "p50_ms": ms(percentile(latencies, 0.5)),
             "p99_ms": ms(percentile(latencies, 0.99)), "mean_ms": ms(sum(latencies) / max(1, len(latencies)))})


def start_search(args, queries, seconds):
    out = multiprocessing.Queue()
    process = multiprocessing.Process(target=search_worker,
                                      args=(args.host, args.port, args.search_token, queries, seconds, out))
    process.start()
    return process, out


# ---- Writers and the poller.

class Ledger:
    def __init__(self):
        self.lock = threading.Lock()
        self.acks = []  # (ack time, seq, posts, answer ids)
        self.posts = 0
        self.refused = 0
        self.failed = []


def writer(args, index, ledger, questions, stop, start_at):
    connection = Connection(args.host, args.port)
    headers = {"authorization": f"Bearer {args.write_token}", "content-type": "application/x-ndjson"}
    rng = random.Random(index)
    next_id = args.first_id + index
    mine = []  # new questions of this writer, as parents for more answers
    per_writer_rate = args.rate / args.writers if args.rate else 0
    sent = 0
    versions = {}  # with --updates: this writer's answers and their versions
    while not stop.is_set():
        lines, answer_ids = [], []
        for _ in range(args.batch):
            if args.updates and len(versions) >= args.pool:
                # The ids this writer created: first_id + index + writers * k, k = 1..len(versions).
                post_id = args.first_id + index + args.writers * (1 + rng.randrange(len(versions)))
                versions[post_id] += 1
                words = " ".join(rng.choice(WORDS) for _ in range(30))
                lines.append({"upsert": {"Id": post_id, "PostTypeId": 2, "ParentId": questions[post_id % len(questions)],
                                         "Score": versions[post_id], "Body": f"<p>{words} v{versions[post_id]}</p>",
                                         "version": versions[post_id]}})
                continue
            next_id += args.writers
            if args.updates:
                versions[next_id] = 1
                words = " ".join(rng.choice(WORDS) for _ in range(30))
                lines.append({"upsert": {"Id": next_id, "PostTypeId": 2, "ParentId": questions[next_id % len(questions)],
                                         "Score": 1, "Body": f"<p>{words} v1</p>", "version": 1}})
                continue
            words = " ".join(rng.choice(WORDS) for _ in range(30))
            roll = rng.random()
            if roll < 0.1:
                mine.append(next_id)
                lines.append({"upsert": {"Id": next_id, "PostTypeId": 1, "Title": f"fresh {words[:60]}",
                                         "Body": f"<p>{words} $x^2$</p>", "Tags": "|fresh|", "version": 1}})
            else:
                parent = rng.choice(mine) if mine and roll < 0.3 else rng.choice(questions)
                answer_ids.append(next_id)
                lines.append({"upsert": {"Id": next_id, "PostTypeId": 2, "ParentId": parent, "Score": 1,
                                         "Body": f"<p>{words} $\\int_0^1 x\\,dx$</p>", "version": 1}})
        body = "".join(json.dumps(line) + "\n" for line in lines)
        if per_writer_rate:
            due = start_at + sent / per_writer_rate
            wait = due - time.time()
            if wait > 0:
                time.sleep(wait)
        try:
            status, raw = connection.call("POST", "/v1/posts:bulk", body, headers)
        except (OSError, http.client.HTTPException) as err:
            ledger.failed.append(str(err))
            return
        acked = time.time()
        sent += len(lines)
        if status != 200:
            ledger.failed.append(f"{status}: {raw[:200]!r}")
            return
        answer = json.loads(raw)
        ok = sum(1 for item in answer["items"] if item["result"] in ("created", "updated", "noop"))
        with ledger.lock:
            ledger.acks.append((acked, answer["seq"], ok, answer_ids))
            ledger.posts += ok
            ledger.refused += len(lines) - ok
            if args.total and ledger.posts >= args.total:
                stop.set()


def poller(args, stop, seen):
    connection = Connection(args.host, args.port)
    headers = {"authorization": f"Bearer {args.search_token}"} if args.search_token else {}
    while not stop.is_set():
        status, raw = connection.call("GET", "/v1/info", None, headers)
        if status == 200:
            seen.append((time.time(), json.loads(raw)["searchable_seq"]))
        time.sleep(args.poll_ms / 1000)


def ingest(args, questions, seconds):
    ledger, stop, seen = Ledger(), threading.Event(), []
    poll_stop = threading.Event()
    poll = threading.Thread(target=poller, args=(args, poll_stop, seen), daemon=True)
    poll.start()
    start_at = time.time()
    writers = [threading.Thread(target=writer, args=(args, i, ledger, questions, stop, start_at), daemon=True)
               for i in range(args.writers)]
    for thread in writers:
        thread.start()
    stop.wait(seconds)
    stop.set()
    for thread in writers:
        thread.join()
    elapsed = time.time() - start_at
    last_seq = max((seq for _, seq, _, _ in ledger.acks), default=0)
    deadline = time.time() + 60
    while (not seen or seen[-1][1] < last_seq) and time.time() < deadline:
        time.sleep(0.01)
    poll_stop.set()
    poll.join()
    # Freshness of each acknowledgement: the first poll after it that saw its seq. Poll times
    # increase and searchable_seq never decreases, so both conditions are a bisection each.
    times, seqs = [t for t, _ in seen], [q for _, q in seen]
    freshness = []
    for acked, seq, _, _ in ledger.acks:
        first = max(bisect.bisect_left(times, acked), bisect.bisect_left(seqs, seq))
        freshness.append(seen[first][0] - acked if first < len(seen) else float("inf"))
    # Spot check: acknowledged answers are there once searchable_seq says so.
    connection = Connection(args.host, args.port)
    headers = {"authorization": f"Bearer {args.search_token}"} if args.search_token else {}
    sample = [i for _, _, _, ids in random.Random(3).sample(ledger.acks, min(20, len(ledger.acks))) for i in ids[:3]]
    missing = sum(1 for i in sample if connection.call("GET", f"/v1/answers/{i}", None, headers)[0] != 200)
    return {"target_posts_per_s": args.rate, "writers": args.writers, "batch": args.batch,
            "seconds": round(elapsed, 1), "acknowledged_posts": ledger.posts,
            "posts_per_s": round(ledger.posts / elapsed, 1), "refused": ledger.refused,
            "failed_calls": ledger.failed[:3], "bulk_calls": len(ledger.acks),
            "freshness_p50_ms": ms(percentile(freshness, 0.5)), "freshness_p99_ms": ms(percentile(freshness, 0.99)),
            "freshness_max_ms": ms(max(freshness, default=None)), "poll_ms": args.poll_ms,
            "spot_checked_answers": len(sample), "spot_missing": missing}


def dump_sample(path, count):
    """Question ids and titles from the head of a dump (rows are one line each)."""
    import html
    import re
    ids, titles = [], []
    with open(path, encoding="utf-8") as xml:
        for line in xml:
            match = re.search(r'<row Id="(\d+)" PostTypeId="1".*? Title="([^"]*)"', line)
            if match:
                ids.append(int(match.group(1)))
                titles.append(html.unescape(match.group(2)))
                if len(ids) >= count:
                    break
    return ids, titles


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--write-token", required=True)
    parser.add_argument("--search-token")
    parser.add_argument("--dump", required=True, help="the dump the index was built from (question ids, queries)")
    parser.add_argument("--rate", type=float, default=1000, help="posts per second; 0: unpaced (the ceiling)")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=50, help="posts per bulk call")
    parser.add_argument("--poll-ms", type=float, default=10)
    parser.add_argument("--first-id", type=int, default=900_000_000, help="ids of the new posts start here")
    parser.add_argument("--updates", action="store_true",
                        help="each writer creates --pool answers, then only updates them (new versions)")
    parser.add_argument("--pool", type=int, default=50_000, help="answers per writer with --updates")
    parser.add_argument("--total", type=int, default=0, help="stop after this many acknowledged posts")
    parser.add_argument("--search-seconds", type=float, default=0,
                        help="measure BM25 latency idle, then under this ingest, for this long each")
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    questions, titles = dump_sample(args.dump, 20_000)
    common = {"label": args.label, "cpu": cpu_model(), "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if args.search_seconds:
        process, out = start_search(args, titles, args.search_seconds)
        idle = out.get()
        process.join()
        print(json.dumps({**common, "phase": "search idle", **idle}), flush=True)
        process, out = start_search(args, titles, args.search_seconds)
        result = ingest(args, questions, args.search_seconds)
        busy = out.get()
        process.join()
        print(json.dumps({**common, "phase": "search under ingest", **busy, "ingest": result}), flush=True)
        return
    print(json.dumps({**common, "phase": "ingest", **ingest(args, questions, args.seconds)}), flush=True)


if __name__ == "__main__":
    main()
