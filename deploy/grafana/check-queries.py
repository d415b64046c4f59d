#!/usr/bin/env python3
"""Runs every query of deploy/grafana/engram.json against a Prometheus and prints what each
returns, so the dashboard's panels can be checked against a real server (README.md here).

    deploy/grafana/check-queries.py [http://127.0.0.1:9090]

Exit status 1 if a query fails or returns nothing.
"""
import json
import pathlib
import sys
import urllib.parse
import urllib.request

prometheus = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:9090"
dashboard = json.loads((pathlib.Path(__file__).parent / "engram.json").read_text())
failed = 0
for panel in dashboard["panels"]:
    for target in panel["targets"]:
        query = urllib.parse.urlencode({"query": target["expr"]})
        with urllib.request.urlopen(f"{prometheus}/api/v1/query?{query}") as response:
            answer = json.load(response)
        result = answer.get("data", {}).get("result", [])
        print(f"## {panel['title']}\n{target['expr']}")
        if answer.get("status") != "success" or not result:
            print(f"  FAILED or empty: {answer}")
            failed += 1
        for series in result:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(series["metric"].items()))
            print(f"  {{{labels}}} {series['value'][1]}")
        print()
sys.exit(1 if failed else 0)
