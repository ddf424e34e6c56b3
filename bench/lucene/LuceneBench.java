// Lucene BM25 side of bench/lucene.sh: opens an Anserini index (Lucene 10 through Anserini's
// SimpleSearcher, default English analyzer), runs every query of a TSV file (`id<TAB>text`)
// for a number of passes, times each search on its own thread, and prints one JSON line with
// p50/p95/p99/mean. With a run file argument, the last pass is also written as a TREC run.
// Compiled by bench/lucene.sh with ecj against the Anserini fat jar.
import io.anserini.search.ScoredDoc;
import io.anserini.search.SimpleSearcher;

import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

public class LuceneBench {
  public static void main(String[] args) throws Exception {
    if (args.length < 4) {
      System.err.println("usage: LuceneBench INDEX QUERIES.tsv TOP_K PASSES [RUN_OUT]");
      System.exit(2);
    }
    String index = args[0];
    List<String[]> queries = new ArrayList<>();
    for (String line : Files.readAllLines(Paths.get(args[1]), StandardCharsets.UTF_8)) {
      int tab = line.indexOf('\t');
      if (tab > 0) {
        queries.add(new String[] {line.substring(0, tab), line.substring(tab + 1)});
      }
    }
    int k = Integer.parseInt(args[2]);
    int passes = Math.max(2, Integer.parseInt(args[3]));
    PrintWriter run = args.length > 4 ? new PrintWriter(args[4], StandardCharsets.UTF_8) : null;
    SimpleSearcher searcher = new SimpleSearcher(index);
    // Lucene's own BM25 defaults, as tantivy's (Anserini's default is k1=0.9, b=0.4).
    searcher.set_bm25(1.2f, 0.75f);
    long[] times = new long[queries.size() * (passes - 1)];
    int timed = 0;
    for (int pass = 0; pass < passes; pass++) {
      for (String[] query : queries) {
        long started = System.nanoTime();
        ScoredDoc[] hits = searcher.search(query[1], k);
        long took = System.nanoTime() - started;
        if (pass > 0) {
          times[timed++] = took;
        }
        if (run != null && pass == passes - 1) {
          for (int rank = 0; rank < hits.length; rank++) {
            run.printf("%s Q0 %s %d %f lucene%n", query[0], hits[rank].docid, rank + 1, hits[rank].score);
          }
        }
      }
    }
    if (run != null) {
      run.close();
    }
    searcher.close();
    Arrays.sort(times);
    double sum = 0;
    for (long t : times) {
      sum += t;
    }
    System.out.printf(
        "{\"impl\": \"lucene\", \"queries\": %d, \"top_k\": %d, \"p50_ms\": %.3f, \"p95_ms\": %.3f, \"p99_ms\": %.3f, \"mean_ms\": %.3f}%n",
        queries.size(), k, times[(int) Math.round(0.50 * (times.length - 1))] / 1e6,
        times[(int) Math.round(0.95 * (times.length - 1))] / 1e6,
        times[(int) Math.round(0.99 * (times.length - 1))] / 1e6, sum / times.length / 1e6);
  }
}
