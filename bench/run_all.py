"""`make bench`: every benchmark in turn; paste the JSON it prints into BENCHMARKS.md."""

import subprocess
import sys

for script, args in [("cold_start.py", []), ("ingest_search.py", ["--docs", "1000", "--queries", "200"]),
                     ("audio.py", []), ("webhook_latency.py", ["--deliveries", "300"]),
                     ("retrieval_quality.py", []),
                     ("load_test.py", ["--submissions", "500", "--searches", "2000", "--clients", "16"]),
                     ("embeddings_api.py", ["--threads", "1"]),
                     ("bulk_ingest.py", ["--docs", "10000", "--threads", "1"]),
                     ("long_recording.py", ["--minutes", "60", "--model", "all-mpnet-base-v2"]),
                     ("time_precision.py", []), ("whisper_memory.py", []),
                     ("ocr_throughput.py", ["--pages", "20"]),
                     ("sources.py", ["--pages", "1000", "--refreshes", "20", "--polite-pages", "100"])]:
    module = f"bench.{script.removesuffix('.py')}"
    print(f"== python -m {module} {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", module, *args], check=True)
