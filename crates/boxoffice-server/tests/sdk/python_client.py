"""Reports to boxoffice through the official Python SDK (sentry-sdk from PyPI).

Run by tests/api_sentry.rs with the organization's DSN in BOXOFFICE_TEST_DSN. Prints one
JSON line: the event ids the SDK returned. The personal data below is planted on purpose:
the test checks that none of it is stored. Keep these literals in step with the test.
"""

import json
import os
import sys

import sentry_sdk


def charge(order_id):
    # Locals: the SDK sends them as frame variables, and these lines as source context.
    customer_email = "carol.buyer@example.com"
    password = "Tr0ub4dor&3-sdk"
    card = "4111 1111 1111 1111"
    raise ValueError("payment declined for order %d" % order_id)


def main():
    sentry_sdk.init(
        dsn=os.environ["BOXOFFICE_TEST_DSN"],
        send_default_pii=True,
        release="boxoffice-sdk-test@1.0.0",
        environment="test",
    )
    sentry_sdk.set_user({"email": "dave.user@example.org", "ip_address": "{{auto}}"})
    exception_ids = []
    for order_id in (1001, 20022, 300333):
        try:
            charge(order_id)
        except ValueError as err:
            exception_ids.append(sentry_sdk.capture_exception(err))
    message_id = sentry_sdk.capture_message("box office shut down unexpectedly", level="fatal")
    sentry_sdk.flush(timeout=10)
    print(json.dumps({
        "sdk_version": sentry_sdk.VERSION,
        "exceptions": exception_ids,
        "message": message_id,
    }))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
