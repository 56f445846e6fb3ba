#!/opt/lettingo/bin/python
"""Container health check: exit 0 when the worker's GET /ready answers 200 (LETTINGO_WEB_PORT, default 6066)."""

import os
import sys
import urllib.error
import urllib.request

port = os.environ.get("LETTINGO_WEB_PORT", "6066")
path = sys.argv[1] if len(sys.argv) > 1 else "/ready"
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=4) as answer:
        sys.exit(0 if answer.status == 200 else 1)
except (urllib.error.URLError, OSError) as e:
    print(f"{path}: {e}", file=sys.stderr)
    sys.exit(1)
