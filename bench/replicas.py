#!/usr/bin/env python3
"""Search replicas following one PostgreSQL store, on this machine: correctness and freshness.

Starts a private PostgreSQL cluster (bench/pg.py), seeds its store from a synthetic dump
(`mathrank index --update --dump D --store URL`), starts REPLICAS `mathrank serve --store URL`
on loopback ports (each builds its own index from the store), then writer threads send
versioned operations through `POST /v1/posts:bulk`, each batch to a replica chosen at random, at
RATE posts/s for SECONDS: new questions and answers, answer edits, question edits (which rewrite
their answers' documents) and answer deletes. Every acknowledgement is logged with its `seq`.

- Freshness: a poller per replica reads `/v1/info` every 20 ms; a batch is searchable on a
  replica at the first poll that reports `searchable_seq >= seq`. Its freshness is the latest of
  those times across the replicas minus the time the acknowledgement arrived (so it includes up
  to one poll interval). Reported: p50, p99, max.
- Correctness: once every replica reports the last acknowledged seq searchable, every
  acknowledged answer is checked on every replica: at its latest acknowledged version (its body
  carries `a<Id>v<version>`) under its question's latest acknowledged title, or 404 if deleted.
- Agreement: QUERIES BM25 queries (`rerank: false`, top 30) on every replica; the answer-id
  lists must be identical.

Ends with a JSON summary line and exits non-zero if any write is missing or a top-30 differs.
Standard library only.
"""

import argparse
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pg  # noqa: E402

TOKEN = "replicas-bench-write-token"
FIRST_ID = 90_000_000
WORDS = ("group ring field prime integral series limit matrix eigenvalue vector norm compact measure "
         "derivative polynomial root graph tree probability variance topology manifold kernel").split()


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Connection:
    """One keep-alive HTTP connection (reopened after an error)."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def request(self, method, path, body=None, headers=None, timeout=60):
        for attempt in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
                self.conn.request(method, path, body=body, headers=headers or {})
                response = self.conn.getresponse()
                return response.status, response.read()
            except (OSError, http.client.HTTPException):
                if self.conn:
                    self.conn.close()
                self.conn = None
                if attempt:
                    raise


class Replica:
    def __init__(self, binary, work, n, url):
        self.n = n
        self.port = pg.free_port()
        self.index = os.path.join(work, f"replica-{n}")
        self.log = open(os.path.join(work, f"replica-{n}.log"), "ab")
        self.process = subprocess.Popen(
            [binary, "--log", "warn", "serve", "--index", self.index, "--store", url, "--no-rerank",
             "--write-token", TOKEN, "--addr", f"127.0.0.1:{self.port}"], stdout=self.log, stderr=self.log)
        self.polls = []  # (time, searchable_seq)

    def wait_ready(self, deadline_s=3600):
        connection = Connection(self.port)
        deadline = time.time() + deadline_s
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"replica {self.n} exited with {self.process.returncode}")
            try:
                if connection.request("GET", "/health", timeout=5)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"replica {self.n} did not become ready")

    def searchable(self, connection):
        status, body = connection.request("GET", "/v1/info")
        if status != 200:
            raise RuntimeError(f"/v1/info on replica {self.n}: {status}")
        return json.loads(body)["searchable_seq"]

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


class Book:
    """What was acknowledged: per post its latest version and state, per batch its seq."""

    def __init__(self):
        self.lock = threading.Lock()
        self.answers = {}  # id -> (question id, version, deleted)
        self.questions = {}  # id -> (version, title)
        self.batches = []  # (ack time, seq)
        self.acknowledged = 0
        self.failed = 0
        self.refused = []


def question_post(qid, version, rng):
    title = f"q{qid}v{version} " + " ".join(rng.sample(WORDS, 4))
    body = "<p>" + " ".join(rng.choice(WORDS) for _ in range(30)) + "</p>"
    return {"Id": qid, "PostTypeId": 1, "Title": title, "Tags": "|bench|", "Body": body, "version": version}


def answer_post(aid, qid, version, rng):
    body = f"<p>a{aid}v{version} " + " ".join(rng.choice(WORDS) for _ in range(40)) + "</p>"
    return {"Id": aid, "PostTypeId": 2, "ParentId": qid, "Body": body, "Score": rng.randint(0, 9), "version": version}


class Writer(threading.Thread):
    """Sends batches of BATCH operations to random replicas at its share of the rate. Owns
    its posts (ids n, n + writers, ...), so its versions increase one by one."""

    def __init__(self, n, writers, replicas, rate, batch, seconds, book):
        super().__init__(daemon=True)
        self.n, self.writers, self.replicas, self.book = n, writers, replicas, book
        self.interval = batch * writers / rate
        self.batch, self.seconds = batch, seconds
        self.rng = random.Random(n)
        self.next_id = FIRST_ID + n
        self.questions = {}  # qid -> version
        self.answers = {}  # aid -> (qid, version, deleted)
        self.connections = [Connection(r.port) for r in replicas]

    def new_id(self):
        post_id = self.next_id
        self.next_id += self.writers
        return post_id

    def operations(self):
        rng, ops = self.rng, []
        for _ in range(self.batch):
            roll = rng.random()
            live = [a for a, (_, _, deleted) in self.answers.items() if not deleted]
            if not self.questions or roll < 0.15:
                qid = self.new_id()
                self.questions[qid] = 1
                ops.append(("q", qid, 1, {"upsert": question_post(qid, 1, rng)}))
            elif roll < 0.20:
                qid = rng.choice(list(self.questions))
                version = self.questions[qid] + 1
                self.questions[qid] = version
                ops.append(("q", qid, version, {"upsert": question_post(qid, version, rng)}))
            elif roll < 0.30 and live:
                aid = rng.choice(live)
                qid, version, _ = self.answers[aid]
                ops.append(("a", aid, version + 1, {"upsert": answer_post(aid, qid, version + 1, rng)}))
                self.answers[aid] = (qid, version + 1, False)
            elif roll < 0.35 and live:
                aid = rng.choice(live)
                qid, version, _ = self.answers[aid]
                ops.append(("d", aid, version + 1, {"delete": {"Id": aid, "version": version + 1}}))
                self.answers[aid] = (qid, version + 1, True)
            else:
                aid = self.new_id()
                qid = rng.choice(list(self.questions)[-50:])
                self.answers[aid] = (qid, 1, False)
                ops.append(("a", aid, 1, {"upsert": answer_post(aid, qid, 1, rng)}))
        return ops

    def run(self):
        started = time.time()
        due = started
        sent = 0
        while time.time() - started < self.seconds:
            due += self.interval
            ops = self.operations()
            body = "".join(json.dumps(op[3]) + "\n" for op in ops).encode()
            replica = self.rng.randrange(len(self.replicas))
            try:
                status, reply = self.connections[replica].request(
                    "POST", "/v1/posts:bulk", body,
                    {"authorization": f"Bearer {TOKEN}", "content-type": "application/x-ndjson"})
            except OSError as err:
                status, reply = 0, str(err).encode()
            acked_at = time.time()
            if status != 200:
                with self.book.lock:
                    self.book.failed += len(ops)
                    self.book.refused.append((status, reply[:200]))
                # Not acknowledged: forget what this batch would have changed.
                for kind, post_id, version, _ in ops:
                    self.undo(kind, post_id, version)
            else:
                self.record(ops, json.loads(reply), acked_at)
            sent += 1
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)

    def undo(self, kind, post_id, version):
        if kind == "q":
            if version == 1:
                self.questions.pop(post_id, None)
            else:
                self.questions[post_id] = version - 1
        elif version == 1:
            self.answers.pop(post_id, None)
        else:
            qid, _, _ = self.answers[post_id]
            self.answers[post_id] = (qid, version - 1, False)

    def record(self, ops, reply, acked_at):
        book = self.book
        with book.lock:
            book.batches.append((acked_at, reply["seq"]))
            for (kind, post_id, version, op), item in zip(ops, reply["items"]):
                if item["result"] in ("created", "updated", "deleted", "noop"):
                    book.acknowledged += 1
                    if kind == "q":
                        book.questions[post_id] = (version, op["upsert"]["Title"])
                    else:
                        qid = op["upsert"]["ParentId"] if kind == "a" else self.answers[post_id][0]
                        book.answers[post_id] = (qid, version, kind == "d")
                else:
                    book.refused.append(item)
                    self.undo(kind, post_id, version)


class Poller(threading.Thread):
    def __init__(self, replica, stop):
        super().__init__(daemon=True)
        self.replica, self.stop = replica, stop

    def run(self):
        connection = Connection(self.replica.port)
        while not self.stop.is_set():
            try:
                seq = self.replica.searchable(connection)
                self.replica.polls.append((time.time(), seq))
            except (OSError, RuntimeError):
                pass
            time.sleep(0.02)


def visible_at(polls, seq, after):
    """The first poll time at or after `after` reporting `seq` searchable (polls are in order)."""
    low, high = 0, len(polls)
    while low < high:
        mid = (low + high) // 2
        if polls[mid][0] < after:
            low = mid + 1
        else:
            high = mid
    for at, searchable in polls[low:]:
        if searchable >= seq:
            return at
    return None


def check_answer(connection, book, aid):
    """None when the replica shows the acknowledged state of answer `aid`, else what it shows."""
    qid, version, deleted = book.answers[aid]
    status, body = connection.request("GET", f"/v1/answers/{aid}")
    if deleted:
        return None if status == 404 else {"Id": aid, "status": status, "expected": 404}
    hit = json.loads(body).get("answer", {}) if status == 200 else {}
    title = book.questions.get(qid, (None, None))[1]
    if status != 200 or f"a{aid}v{version} " not in hit.get("body", "") or hit.get("title") != title:
        return {"Id": aid, "status": status, "version": version, "title": hit.get("title"), "expected": title}
    return None


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] if values else None


def run(args):
    binary = os.path.abspath(args.mathrank)
    work = os.path.abspath(args.work)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    cluster = pg.Cluster(os.path.join(work, "pg"))
    replicas = []
    try:
        url = cluster.create_database("mathrank")
        dump = args.dump
        if dump is None:
            dump = os.path.join(work, "seed.xml")
            subprocess.run([os.path.abspath(args.gen or os.path.join(os.path.dirname(binary), "mathrank-bench")), "gen-dump", "--questions", str(args.questions),
                            "--answers", str(args.answers), "--seed", "7", "--out", dump], check=True,
                           stdout=subprocess.DEVNULL)
        log(f"seeding the store from {dump}")
        subprocess.run([binary, "--log", "warn", "index", "--update", "--dump", dump, "--store", url, "--index",
                        os.path.join(work, "seed-index")], check=True, stdout=subprocess.DEVNULL)
        shutil.rmtree(os.path.join(work, "seed-index"))
        started = time.time()
        replicas = [Replica(binary, work, n, url) for n in range(args.replicas)]
        for replica in replicas:
            replica.wait_ready()
        log(f"{len(replicas)} replicas ready in {time.time() - started:.1f} s")
        stop = threading.Event()
        pollers = [Poller(r, stop) for r in replicas]
        for poller in pollers:
            poller.start()
        book = Book()
        writers = [Writer(n, args.writers, replicas, args.rate, args.batch, args.seconds, book)
                   for n in range(args.writers)]
        write_start = time.time()
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
        write_seconds = time.time() - write_start
        last = max((seq for _, seq in book.batches), default=0)
        log(f"{book.acknowledged} operations acknowledged in {write_seconds:.1f} s; waiting for seq {last}")
        connections = [Connection(r.port) for r in replicas]
        deadline = time.time() + 120
        while min(r.searchable(c) for r, c in zip(replicas, connections)) < last:
            if time.time() > deadline:
                raise RuntimeError("the replicas did not catch up within 120 s")
            time.sleep(0.05)
        stop.set()
        for poller in pollers:
            poller.join()
        freshness = []
        for acked_at, seq in book.batches:
            times = [visible_at(r.polls, seq, acked_at - 5) for r in replicas]
            if None not in times:
                freshness.append(max(max(times) - acked_at, 0.0))
        missing = []
        for replica, connection in zip(replicas, connections):
            for aid in book.answers:
                problem = check_answer(connection, book, aid)
                if problem:
                    missing.append({"replica": replica.n, **problem})
        rng = random.Random(11)
        queries = [" ".join(rng.sample(WORDS, 3)) for _ in range(args.queries)]
        differing = []
        for query in queries:
            body = json.dumps({"query": query, "topK": 30, "rerank": False}).encode()
            lists = []
            for connection in connections:
                status, reply = connection.request("POST", "/v1/search", body, {"content-type": "application/json"})
                lists.append([hit["answerId"] for hit in json.loads(reply)["hits"]])
            if any(ids != lists[0] for ids in lists[1:]):
                differing.append({"query": query, "lists": lists})
        summary = {
            "replicas": len(replicas), "rate": args.rate, "seconds": round(write_seconds, 1),
            "acknowledged": book.acknowledged, "not_acknowledged": book.failed,
            "posts_per_s": round(book.acknowledged / write_seconds, 1),
            "answers_checked": len(book.answers) * len(replicas), "missing": len(missing),
            "freshness_p50_s": percentile(freshness, 50), "freshness_p99_s": percentile(freshness, 99),
            "freshness_max_s": max(freshness, default=None), "batches": len(book.batches),
            "queries": len(queries), "top30_differing": len(differing),
        }
        for problem in missing[:10]:
            log(f"missing: {problem}")
        for problem in differing[:3]:
            log(f"differing top-30: {json.dumps(problem)[:600]}")
        for refusal in book.refused[:5]:
            log(f"refused: {refusal}")
        print(json.dumps(summary), flush=True)
        return 0 if not missing and not differing else 1
    finally:
        for replica in replicas:
            replica.stop()
        cluster.stop("immediate")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mathrank", required=True, help="the mathrank binary (a release build)")
    parser.add_argument("--gen", help="the binary with `gen-dump` [default: mathrank-bench beside --mathrank]")
    parser.add_argument("--work", required=True, help="a scratch directory (emptied)")
    parser.add_argument("--dump", help="seed the store from this dump [default: a generated one]")
    parser.add_argument("--questions", type=int, default=20_000, help="questions of the generated dump")
    parser.add_argument("--answers", type=int, default=20_000, help="answers of the generated dump")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--rate", type=float, default=500, help="operations per second, all writers together")
    parser.add_argument("--batch", type=int, default=10, help="operations per bulk call")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--queries", type=int, default=100)
    sys.exit(run(parser.parse_args()))


if __name__ == "__main__":
    main()
