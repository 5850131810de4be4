#!/usr/bin/env python3
"""Verifies webhook deliveries with the Standard Webhooks reference library, as a tenant would.

Reads JSON from stdin: {"secret": "whsec_...", "deliveries": [{"headers": {...}, "body": "..."}]}
and prints one line per delivery: "ok" or "invalid: <why>". Exits 0 when all are ok.
"""

import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main() -> int:
    request = json.load(sys.stdin)
    webhook = Webhook(request["secret"])
    failures = 0
    for delivery in request["deliveries"]:
        try:
            webhook.verify(delivery["body"], delivery["headers"])
            print("ok")
        except WebhookVerificationError as e:
            failures += 1
            print(f"invalid: {e}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
