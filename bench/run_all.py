"""`make bench`: every benchmark in turn; paste the JSON it prints into BENCHMARKS.md."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

for script, args in [("cold_start.py", []), ("ingest_search.py", ["--docs", "1000", "--queries", "200"]),
                     ("audio.py", []), ("webhook_latency.py", ["--deliveries", "300"]),
                     ("retrieval_quality.py", []),
                     ("load_test.py", ["--submissions", "500", "--searches", "2000", "--clients", "16"]),
                     ("embeddings_api.py", ["--threads", "1"]),
                     ("bulk_ingest.py", ["--docs", "10000", "--threads", "1"])]:
    print(f"== bench/{script} {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, str(HERE / script), *args], check=True)
