#!/usr/bin/env python3
"""Crash loop of the live index: SIGKILL the server at random moments while clients write,
then check that no acknowledged write was lost.

Each cycle starts `mathrank serve` on an index built from a small synthetic dump, lets client
threads send versioned operations through `POST /v1/posts:bulk` (new questions and answers,
edits, votes, acceptance, deletes of answers and questions, edits of dump questions), sometimes
asks for a rebuild (`POST /v1/index:rebuild`) and sometimes runs a delta
(`mathrank index --dump OTHER --update`) beside it, and kills the server (and the delta) with
SIGKILL after a random time: during ingest, a commit, a merge, a delta or a rebuild's switch.
After each restart it waits until the server reports the store's last sequence number
searchable, then checks every post written since the last check (and a sample of the others):

- every acknowledged write is in the store at its version or a later one the client sent,
  and deleted if the latest acknowledged operation deleted it;
- the index agrees with the store: an answer whose question is live is found by
  `GET /v1/answers/{id}` with the body of its stored version and its question's stored title
  (titles carry the question's version, so the embedded question is the stored one); any
  other answer is 404.

With `--postgres`, the post store is a PostgreSQL database of a private cluster (bench/pg.py):
the server runs with `--store URL` (its index built from the store), deltas run with `--store
URL`, and the checks read the store with psql.

Every acknowledgement is logged to ACKS (JSON lines). The run ends with one line,
`crash loop: N kills, N acknowledged, N lost, N index mismatches, ...`, and exits non-zero
when anything was lost or mismatched. Standard library only (urllib/http.client, sqlite3).
"""

import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time

TOKEN = "crash-loop-write-token"
CLIENT_IDS = 50_000_000  # client posts live above the synthetic dump's ids


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, binary, index, port, log_path, store_flags=()):
        self.port = port
        self.log = open(log_path, "ab")
        self.process = subprocess.Popen(
            [binary, "--log", "warn", "serve", "--index", index, "--no-rerank", "--write-token", TOKEN,
             "--addr", f"127.0.0.1:{port}", "--grace-seconds", "1", *store_flags],
            stdout=self.log, stderr=self.log)

    def kill(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.log.close()


def request(port, method, path, body=None, headers=None, timeout=60):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def wait_healthy(server, deadline_s=120):
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited with {server.process.returncode}")
        try:
            status, _ = request(server.port, "GET", "/health", timeout=2)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("the server did not become healthy")


class SqliteReader:
    """Reads the SQLite store (read-only) for the checks."""

    def __init__(self, path):
        self.path = path

    def query(self, sql, params=()):
        with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30) as db:
            return list(db.execute(sql, params))


class PgReader:
    """Reads the PostgreSQL store with psql; rows come back as the SQLite reader's."""

    def __init__(self, cluster, url):
        self.cluster, self.url = cluster, url

    def query(self, sql, params=()):
        for value in params:
            sql = sql.replace("?", str(int(value)), 1)
        sql = sql.replace(" FROM posts", " FROM mathrank_posts").replace("deleted = 0", "NOT deleted")
        sql = sql.replace("title FROM", "convert_from(title, 'UTF8') FROM")
        rows = []
        for row in self.cluster.psql(self.url, sql):
            rows.append(tuple(int(v) if v.lstrip("-").isdigit() else {"t": 1, "f": 0}.get(v, v) for v in row))
        return rows


def store_seq(reader):
    return reader.query("SELECT coalesce(max(seq), 0) FROM posts")[0][0]


def searchable_seq(port):
    status, body = request(port, "GET", "/v1/info", timeout=10)
    if status != 200:
        raise RuntimeError(f"/v1/info answered {status}: {body[:200]!r}")
    return json.loads(body)["searchable_seq"]


class Book:
    """What the clients sent and what the server acknowledged, per post."""

    def __init__(self, ack_path):
        self.lock = threading.Lock()
        self.sent = {}  # id -> set of versions sent
        self.acked = {}  # id -> (version, deleted)
        self.touched = set()
        self.acks = open(ack_path, "a")
        self.acknowledged = 0
        self.errors = []

    def send(self, post_id, version):
        with self.lock:
            self.sent.setdefault(post_id, set()).add(version)
            self.touched.add(post_id)

    def ack(self, post_id, version, deleted, result, error):
        with self.lock:
            self.acks.write(json.dumps({"Id": post_id, "version": version, "deleted": deleted, "result": result,
                                        "error": error, "t": time.time()}) + "\n")
            if result in ("created", "updated", "deleted", "noop"):
                self.acknowledged += 1
                previous = self.acked.get(post_id)
                if previous is None or version >= previous[0]:
                    self.acked[post_id] = (version, deleted)
            elif not (error and error.get("field") == "ParentId"):
                # An answer to a question deleted meanwhile is refused by design; anything else
                # is the server refusing a valid operation.
                self.errors.append((post_id, version, result, error))


class Client(threading.Thread):
    """Owns the posts whose id is `index` modulo `count`, so that its versions only increase."""

    def __init__(self, index, count, port, book, dump_questions, rng_seed, stop):
        super().__init__(daemon=True)
        self.index, self.count, self.port, self.book, self.stop = index, count, port, book, stop
        self.rng = random.Random(rng_seed)
        self.dump_questions = [q for q in dump_questions if q % count == index]
        self.state = None  # shared across cycles, set by the loop
        self.sent_ops = 0

    def next_id(self):
        self.state["next"] += self.count
        return self.state["next"]

    def version(self, post_id):
        version = self.state["versions"].get(post_id, 0) + 1
        self.state["versions"][post_id] = version
        return version

    def question(self, post_id, version, accepted=None):
        words = " ".join(self.rng.choice(WORDS) for _ in range(5))
        post = {"Id": post_id, "PostTypeId": 1, "Title": f"q{post_id}v{version} {words}",
                "Body": f"<p>question {post_id} version {version}: {words} $x^{version}$</p>",
                "Tags": "|crash|loop|", "version": version}
        if accepted:
            post["AcceptedAnswerId"] = accepted
        return {"upsert": post}, (post_id, version, False)

    def answer(self, post_id, parent, version):
        words = " ".join(self.rng.choice(WORDS) for _ in range(8))
        post = {"Id": post_id, "PostTypeId": 2, "ParentId": parent, "Score": self.rng.randint(-2, 50),
                "Body": f"<p>a{post_id}v{version} {words}</p>", "version": version}
        return {"upsert": post}, (post_id, version, False)

    def operation(self):
        state, rng = self.state, self.rng
        questions, answers = state["questions"], state["answers"]
        roll = rng.random()
        if roll < 0.12 or not questions:
            post_id = self.next_id()
            questions[post_id] = []
            return self.question(post_id, self.version(post_id))
        if roll < 0.40:
            parent = rng.choice(list(questions))
            post_id = self.next_id()
            questions[parent].append(post_id)
            answers[post_id] = parent
            return self.answer(post_id, parent, self.version(post_id))
        if roll < 0.65 and answers:
            post_id = rng.choice(list(answers))
            return self.answer(post_id, answers[post_id], self.version(post_id))
        if roll < 0.82:
            post_id = rng.choice(list(questions))
            accepted = rng.choice(questions[post_id]) if questions[post_id] and rng.random() < 0.5 else None
            return self.question(post_id, self.version(post_id), accepted)
        if roll < 0.90 and answers:
            post_id = rng.choice(list(answers))
            parent = answers.pop(post_id)
            if post_id in questions.get(parent, []):
                questions[parent].remove(post_id)
            version = self.version(post_id)
            return {"delete": {"Id": post_id, "version": version}}, (post_id, version, True)
        if roll < 0.94 and len(questions) > 5:
            post_id = rng.choice(list(questions))
            for answer_id in questions.pop(post_id):
                answers.pop(answer_id, None)
            version = self.version(post_id)
            return {"delete": {"Id": post_id, "version": version}}, (post_id, version, True)
        if self.dump_questions:
            post_id = rng.choice(self.dump_questions)
            return self.question(post_id, self.version(post_id))
        post_id = self.next_id()
        questions[post_id] = []
        return self.question(post_id, self.version(post_id))

    def run(self):
        connection = None
        while not self.stop.is_set():
            batch = [self.operation() for _ in range(self.rng.randint(5, 40))]
            for _, (post_id, version, _) in batch:
                self.book.send(post_id, version)
            body = "".join(json.dumps(line) + "\n" for line, _ in batch)
            try:
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                connection.request("POST", "/v1/posts:bulk", body=body, headers={
                    "authorization": f"Bearer {TOKEN}", "content-type": "application/x-ndjson"})
                response = connection.getresponse()
                answer = json.loads(response.read())
            except (OSError, http.client.HTTPException, ValueError):
                return  # the server is gone: these operations are unacknowledged
            self.sent_ops += len(batch)
            for (_, (post_id, version, deleted)), item in zip(batch, answer["items"]):
                if item["Id"] != post_id:
                    self.book.errors.append((post_id, version, "wrong id", item))
                self.book.ack(post_id, version, deleted, item["result"], item.get("error"))


WORDS = ("integral derivative matrix eigenvalue prime group ring field limit series sum proof induction "
         "topology measure probability graph vertex polynomial root norm vector basis kernel").split()


def dump_questions(path):
    """Ids that are questions in the dump (parsed with a regex: rows are one line each)."""
    ids = set()
    with open(path, encoding="utf-8") as xml:
        for line in xml:
            match = re.search(r'<row Id="(\d+)" PostTypeId="1"', line)
            if match:
                ids.add(int(match.group(1)))
    return ids


class Checker:
    def __init__(self, store, port, book):
        self.store, self.port, self.book = store, port, book
        self.lost, self.mismatches, self.checked = [], [], 0

    def rows(self, ids):
        found = {}
        ids = list(ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.store.query(f"SELECT id, kind, parent_id, deleted, version, title FROM posts "
                                        f"WHERE id IN ({marks})", chunk):
                found[row[0]] = row
        return found

    def answers_of(self, question_ids):
        """Up to 20 live answers of each question, 500 questions a query (a query each made the
        final check against PostgreSQL, one psql process per question, take most of an hour)."""
        answers, question_ids = [], list(question_ids)
        for start in range(0, len(question_ids), 500):
            chunk = question_ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            answers += [r[0] for r in self.store.query(
                "SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY parent_id ORDER BY id) AS n"
                f" FROM posts WHERE parent_id IN ({marks}) AND kind = 2 AND deleted = 0) AS live WHERE n <= 20",
                chunk)]
        return answers

    def check(self, ids):
        book = self.book
        rows = self.rows(ids)
        questions = [i for i in ids if i in rows and rows[i][1] == 1]
        answer_ids = set(i for i in ids if i in rows and rows[i][1] == 2) | set(self.answers_of(questions))
        rows.update(self.rows(answer_ids - rows.keys()))
        for post_id in ids:
            with book.lock:
                acked = book.acked.get(post_id)
                sent = set(book.sent.get(post_id, ()))
            row = rows.get(post_id)
            self.checked += 1
            if acked is None:
                continue
            version, deleted = acked
            if row is None or row[4] < version or (row[4] == version and bool(row[3]) != deleted):
                self.lost.append({"Id": post_id, "acked": acked, "stored": None if row is None else row[3:5]})
            elif row[4] > version and row[4] not in sent:
                self.lost.append({"Id": post_id, "acked": acked, "stored_version_never_sent": row[4]})
        parents = self.rows({rows[a][2] for a in answer_ids if a in rows and rows[a][2]})
        for answer_id in answer_ids:
            row = rows.get(answer_id)
            if row is None:
                continue
            parent = parents.get(row[2])
            visible = not row[3] and parent is not None and parent[1] == 1 and not parent[3]
            status, body = request(self.port, "GET", f"/v1/answers/{answer_id}", headers={}, timeout=30)
            if visible:
                hit = json.loads(body).get("answer", {}) if status == 200 else {}
                # Client posts carry their version: the body says which version the document
                # holds, the title which version of the question it embeds.
                marker = f"a{answer_id}v{row[4]} " if answer_id >= CLIENT_IDS else ""
                ours = parent[5].startswith(f"q{parent[0]}v")
                if status != 200 or (ours and hit.get("title") != parent[5]) or marker not in hit.get("body", ""):
                    self.mismatches.append({"Id": answer_id, "status": status, "version": row[4],
                                            "title": hit.get("title"), "store_title": parent[5]})
            elif status != 404:
                self.mismatches.append({"Id": answer_id, "status": status, "expected": 404})


def run(args):
    binary = os.path.abspath(args.mathrank)
    bench = os.path.abspath(args.mathrank_bench or os.path.join(os.path.dirname(binary), "mathrank-bench"))
    work = os.path.abspath(args.work)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    dumps = []
    for seed in (1, 2):
        path = os.path.join(work, f"dump-{seed}.xml")
        subprocess.run([bench, "--log", "error", "gen-dump", "--questions", str(args.questions), "--answers",
                        str(args.answers), "--seed", str(seed), "--out", path], check=True, stdout=subprocess.DEVNULL)
        dumps.append(path)
    index = os.path.join(work, "index")
    cluster = None
    if args.postgres:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import pg
        cluster = pg.Cluster(os.path.join(work, "pg"))
        url = cluster.create_database("mathrank")
        store_flags = ("--store", url)
        # The dump seeds the shared store as a delta over nothing; the index is built from it.
        subprocess.run([binary, "--log", "error", "index", "--dump", dumps[0], "--update", "--index", index,
                        *store_flags], check=True, stdout=subprocess.DEVNULL)
        store = PgReader(cluster, url)
    else:
        store_flags = ()
        subprocess.run([binary, "--log", "error", "index", "--dump", dumps[0], "--index", index, "--threads", "1"],
                       check=True, stdout=subprocess.DEVNULL)
        store = SqliteReader(os.path.join(index, "posts.sqlite"))
    try:
        return cycles(args, binary, work, dumps, index, store, store_flags)
    finally:
        if cluster is not None:
            cluster.stop("immediate")


def cycles(args, binary, work, dumps, index, store, store_flags):
    shared_questions = dump_questions(dumps[0]) & dump_questions(dumps[1])
    rng = random.Random(args.seed)
    book = Book(os.path.join(work, "acks.jsonl"))
    states = [{"next": CLIENT_IDS + i, "versions": {}, "questions": {}, "answers": {}} for i in range(args.clients)]
    kills = rebuilds = deltas = deltas_done = 0
    started = time.time()
    cycle = 0
    while kills < args.kills or book.acknowledged < args.ops:
        cycle += 1
        port = free_port()
        server = Server(binary, index, port, os.path.join(work, "server.log"), store_flags)
        wait_healthy(server)
        checker = Checker(store, port, book)
        target = store_seq(store)
        deadline = time.time() + 120
        while searchable_seq(port) < target:
            if time.time() > deadline:
                raise RuntimeError(f"cycle {cycle}: the index did not reach sequence number {target}")
            time.sleep(0.02)
        with book.lock:
            touched, book.touched = book.touched, set()
        sample = rng.sample(sorted(book.acked), min(args.sample, len(book.acked))) if book.acked else []
        checker.check(sorted(touched | set(sample)))
        if checker.lost or checker.mismatches or book.errors:
            log(f"cycle {cycle}: lost {checker.lost[:5]} mismatches {checker.mismatches[:5]} errors {book.errors[:5]}")
            server.kill()
            return report(kills, book, checker, rebuilds, deltas, deltas_done, started, failed=True)
        stop = threading.Event()
        clients = []
        for i, state in enumerate(states):
            client = Client(i, args.clients, port, book, shared_questions, rng.random(), stop)
            client.state = state
            clients.append(client)
            client.start()
        delta = None
        if cycle % args.delta_every == 0:
            deltas += 1
            delta = subprocess.Popen([binary, "--log", "error", "index", "--dump", dumps[deltas % 2], "--update",
                                      "--index", index, *store_flags], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        run_for = rng.uniform(args.min_run, args.max_run)
        if cycle % args.rebuild_every == 0:
            time.sleep(rng.uniform(0, run_for / 2))
            try:
                request(port, "POST", "/v1/index:rebuild", headers={"authorization": f"Bearer {TOKEN}"})
                rebuilds += 1
            except OSError:
                pass
            run_for /= 2
        time.sleep(run_for)
        server.kill()
        kills += 1
        if delta is not None:
            if delta.poll() is None:
                delta.send_signal(signal.SIGKILL)
            if delta.wait() == 0:
                deltas_done += 1
        stop.set()
        for client in clients:
            client.join()
        if cycle % 10 == 0:
            log(f"{kills} kills, {book.acknowledged} acknowledged, {checker.checked} checked last cycle, "
                f"{rebuilds} rebuilds asked, {deltas_done}/{deltas} deltas finished")
    # A last, full check over everything the clients ever acknowledged.
    port = free_port()
    server = Server(binary, index, port, os.path.join(work, "server.log"), store_flags)
    wait_healthy(server)
    target = store_seq(store)
    while searchable_seq(port) < target:
        time.sleep(0.02)
    checker = Checker(store, port, book)
    checker.check(sorted(book.acked))
    server.kill()
    return report(kills, book, checker, rebuilds, deltas, deltas_done, started, failed=False)


def report(kills, book, checker, rebuilds, deltas, deltas_done, started, failed):
    failed = failed or bool(checker.lost or checker.mismatches or book.errors)
    result = {"kills": kills, "acknowledged": book.acknowledged, "lost": len(checker.lost),
              "index_mismatches": len(checker.mismatches), "refused_valid_operations": len(book.errors),
              "posts_checked_at_the_end": checker.checked, "rebuilds_asked": rebuilds, "deltas_started": deltas,
              "deltas_finished": deltas_done, "seconds": round(time.time() - started, 1)}
    print(json.dumps(result))
    print(f"crash loop: {kills} kills, {book.acknowledged} acknowledged, {len(checker.lost)} lost, "
          f"{len(checker.mismatches)} index mismatches, {len(book.errors)} valid operations refused, "
          f"{rebuilds} rebuilds asked, {deltas_done}/{deltas} deltas finished, {result['seconds']} s")
    return 1 if failed else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mathrank", required=True, help="the mathrank binary")
    parser.add_argument("--mathrank-bench", help="the mathrank-bench binary (its synthetic dumps) "
                        "[default: beside --mathrank]")
    parser.add_argument("--work", required=True, help="a scratch directory (emptied)")
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--ops", type=int, default=200_000, help="acknowledged operations at least")
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--questions", type=int, default=3000)
    parser.add_argument("--answers", type=int, default=4000)
    parser.add_argument("--min-run", type=float, default=0.3, help="seconds of writes before a kill, at least")
    parser.add_argument("--max-run", type=float, default=2.5)
    parser.add_argument("--rebuild-every", type=int, default=4)
    parser.add_argument("--delta-every", type=int, default=6)
    parser.add_argument("--sample", type=int, default=200, help="other posts checked after each restart")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--postgres", action="store_true",
                        help="the post store in PostgreSQL (a private cluster of Debian's postgresql)")
    args = parser.parse_args()
    sys.exit(run(args))


if __name__ == "__main__":
    main()
