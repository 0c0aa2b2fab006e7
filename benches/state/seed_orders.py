#!/usr/bin/env python3
"""Seed the orders example for benches/state: POST ORDERS orders bench-1..bench-N to BASE/orders.

An order that already exists (409: a MariaDB table from an earlier run) is fine; anything else
but 201 stops the benchmark row with the function's answer.
    seed_orders.py http://127.0.0.1:PORT 500
"""
import http.client
import json
import sys
import urllib.parse


def main():
    base, count = sys.argv[1], int(sys.argv[2])
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    for n in range(1, count + 1):
        order = {
            "order_id": f"bench-{n}",
            "product_id": f"p-{n % 100}",
            "quantity": 1 + n % 9,
            "amount": 10.5 + n,
            "shipping": 4.0,
            "tax": 1.25,
            "shipping_address": "1 Bench Street",
        }
        conn.request("POST", "/orders", json.dumps(order), {"Content-Type": "application/json"})
        reply = conn.getresponse()
        body = reply.read()
        if reply.status not in (201, 409):
            sys.exit(f"seed_orders: POST /orders bench-{n}: {reply.status} {body[:300]!r}")
    print(f"seed_orders: {count} orders at {base}/orders")


if __name__ == "__main__":
    main()
