"""Verifies received webhooks with the Standard Webhooks reference library,
independently of the dispatcher's own signing code. Run by
tests/tests/webhooks.rs.

stdin: one JSON object per line: {"secret", "headers": {...}, "body"}.
Prints "OK <n>" when every webhook verifies; exits 1 naming the first that
does not.
"""

import json
import sys

from standardwebhooks.webhooks import Webhook


def main():
    count = 0
    for line in sys.stdin:
        if not line.strip():
            continue
        item = json.loads(line)
        try:
            Webhook(item["secret"]).verify(item["body"], item["headers"])
        except Exception as error:  # the library raises its own types
            print(f"FAILED: {error} for {item['headers'].get('webhook-id')}")
            sys.exit(1)
        count += 1
    print(f"OK {count}")


if __name__ == "__main__":
    main()
